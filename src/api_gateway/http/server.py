"""The HTTP/1.1 server connection: one ``asyncio.Protocol`` per connection, llhttp for parsing.

The connection parses and moves bytes; its phase (``server_phases.py``) says what it is doing,
and what becomes of a parsed request is the exchange's (``exchange.py``). A request is
dispatched as soon as its head is parsed; a body that is complete in the bytes already received
is handed over as ``bytes`` (the common case costs no stream), otherwise as a ``BodyStream``
with back-pressure (``arrival.py`` holds its timeouts). Pipelined requests queue and are
answered in order. A connection ends one of two ways: ``end`` (graceful: what was received is
answered, then it closes) or ``reset`` (now, whatever is in flight).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, Protocol, cast

import httptools

from api_gateway.errors import GatewayError, HeadersTooLarge, MalformedRequest, RequestTimeout
from api_gateway.http import exchange
from api_gateway.http.arrival import Arrival
from api_gateway.http.body import BodyStream
from api_gateway.http.connections import Connections as Connections
from api_gateway.http.exchange import RECEIVING_TASK_NAME
from api_gateway.http.exchange import TASK_NAME as TASK_NAME
from api_gateway.http.flow import BODY, STOPPED, Flow
from api_gateway.http.framing import CONTINUE
from api_gateway.http.reader import RequestReader
from api_gateway.http.server_phases import (
    ALLOWED,
    CLOSED,
    ENDING,
    IDLE,
    NEW,
    READING,
    TUNNEL,
    WIDTH,
    ImpossibleTransition,
)
from api_gateway.http.tunnel import Tunnel
from api_gateway.timers import forgives, unread
from api_gateway.types import Request, Response

# While draining, how long a connection that has not sent its first request may still send it.
FIRST_REQUEST_GRACE_S: Final = 1.0
# While draining (a hand-over or a stop), how long an idle keep-alive connection stays open for
# a next request the client may already have sent: answered with ``Connection: close``. A
# client sends its next request right after the last answer or after a pause; only a connection
# quiet for the whole grace (and up to one sweep more) is closed.
DRAIN_IDLE_GRACE_S: Final = 1.0
INFINITY: Final = float("inf")


class App(Protocol):
    def handle(self, request: Request) -> Awaitable[Response]: ...

    def reject(self, error: GatewayError, peer_ip: str) -> Response: ...


@dataclass(frozen=True, slots=True)
class ServerBounds:
    max_header_bytes: int = 16384
    max_header_count: int = 100
    max_uri_bytes: int = 8192
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 75.0
    body_timeout_s: float = 60.0
    # 0: no minimum rate, only the body timeout between reads.
    min_body_rate_bytes_per_s: int = 500
    body_rate_window_s: float = 20.0


class HttpConnection(asyncio.Protocol):
    def __init__(
        self, app: App, bounds: ServerBounds, connections: Connections, server_port: int
    ) -> None:
        self.app, self.bounds, self.connections = app, bounds, connections
        self.loop = connections.loop
        self.reader = RequestReader(self, bounds, server_port)
        self.transport: asyncio.Transport | None = None
        self.flow = Flow(self.loop)
        self.phase = NEW
        self.peer_ip = ""
        self.queue: deque[Request | GatewayError] = deque()
        # The connection's one task (``exchange.run``); ``task`` is it while a request is in
        # flight, None between requests. ``item`` is handed to it, ``wake`` wakes it.
        self.task: asyncio.Task[None] | None = None
        self.runner: asyncio.Task[None] | None = None
        self.item: Request | GatewayError | None = None
        self.wake: asyncio.Future[None] | None = None
        self.deadline = INFINITY
        # Sweeps that spared this connection past ``spared_for`` (its deadline then): bytes unread.
        self.spared_for = INFINITY
        self.spared = 0
        # A body still arriving after its request was dispatched, and its timeouts.
        self.body_stream: BodyStream | None = None
        self.arrival: Arrival | None = None

    # phases

    def to(self, phase: int) -> None:
        """The one way the phase changes: along ``server_phases.TRANSITIONS`` only."""
        if not ALLOWED >> (self.phase * WIDTH + phase) & 1:
            raise ImpossibleTransition(self.phase, phase)
        self.phase = phase

    def end(self) -> None:
        """The graceful end: nothing more is read; what was received is answered in order, the
        last answer says ``Connection: close``, then the connection closes."""
        if self.phase >= ENDING:
            return
        self.to(ENDING)
        self.flow.stop_reading()
        if self.task is None and not self.queue and not self.reader.fresh:
            self.close()

    def close(self) -> None:
        """Close once what is written is sent (the end of ``end``)."""
        self.to(CLOSED)
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Drop the connection now, whatever is in flight."""
        self.to(CLOSED)
        self.flow.stop_reading()
        if self.transport is not None:
            self.transport.abort()

    def hand_over(self, tunnel: Tunnel, upstream: asyncio.Transport, pending: bytes) -> None:
        """After a ``101`` went out: the transport becomes one side of ``tunnel`` (``pending``:
        what the upstream sent after its head); this connection is done with it."""
        transport = self.transport
        assert transport is not None
        self.to(TUNNEL)
        self.connections.discard(self)
        self.transport = self.flow.transport = None
        tunnel.join(transport, upstream, self.reader.upgrade_rest, pending)

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.flow.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer_ip = self.reader.peer_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        self.connections.open.add(self)
        self.deadline = self.loop.time() + self.bounds.header_timeout_s
        if self.connections.draining:
            # Taken from the listener's queue during the drain: its request, if any, is usually
            # here already; a client that has sent nothing gets no more than the others.
            self.deadline = min(self.deadline, self.loop.time() + FIRST_REQUEST_GRACE_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.to(CLOSED)
        if self.runner is not None:
            self.runner.cancel()
        if self.body_stream is not None:
            self.body_stream.fail(ConnectionResetError("client closed the connection"))
        self.flow.lost(ConnectionResetError("client closed the connection"))

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.phase >= ENDING:
            return
        if self.body_stream is not None:
            self.body_deadline()
        reader = self.reader
        reader.read_used = 0
        reader.head_in_read = False
        try:
            reader.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # Nothing more is parsed: the request is answered, then the connection closes, or
            # a 101 hands it to a tunnel with what the client sent after the head.
            reader.upgrade_rest = data[upgrade.args[0] :]
            self.end()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, ImpossibleTransition):
                raise exc.__context__ from exc  # a bug of ours in a callback, not the client
            self.fail(reader.callback_error or MalformedRequest(f"malformed request: {exc}"))
            return
        if reader.in_head:
            if reader.head_too_large(len(data)):
                self.fail(HeadersTooLarge(f"the headers exceed {reader.max_header_bytes} bytes"))
                return
        elif reader.body_request is not None and reader.framing_too_large(len(data)):
            limit = reader.max_header_bytes
            self.fail(HeadersTooLarge(f"the chunk framing exceeds {limit} bytes"))
            return
        if reader.fresh:
            exchange.dispatch(self)

    @property
    def in_head(self) -> bool:
        """Whether a request head is arriving (behind a request in flight, or not)."""
        return self.reader.in_head

    # llhttp's, through the reader

    def message_begins(self) -> None:
        # The header timeout runs from the request line, not from any byte: llhttp skips empty
        # lines before it, and they must not keep an idle connection open forever.
        if self.task is None:
            self.deadline = self.loop.time() + self.bounds.header_timeout_s
        if self.phase < READING:
            self.to(READING)

    def body_arrived(self) -> None:
        """The streamed body's last byte arrived."""
        arrival = self.arrival
        assert arrival is not None
        arrival.stream.feed_eof()
        self.body_stream = self.arrival = None
        if arrival.pace is not None:
            self.deadline = arrival.idle_deadline  # no rate window left to judge
        task = self.task
        if task is not None and task.get_name() == RECEIVING_TASK_NAME:
            task.set_name(TASK_NAME)

    # a body arriving after its request was dispatched

    def stream_for(self, buffered: list[bytes]) -> BodyStream:
        stream = BodyStream(self._pause_for_body, self._resume_for_body, self._abandon_body)
        for chunk in buffered:
            stream.feed(chunk)
        pending = self.reader.expect_continue and not buffered
        now = self.loop.time()
        self.arrival = Arrival(stream, self.bounds, now, bool(self.flow.reading_paused), pending)
        if pending:
            stream.on_first_read(self._send_continue)
        return stream

    def _send_continue(self) -> None:
        arrival = self.arrival
        if arrival is not None:
            arrival.continue_pending = False
        if self.transport is not None and self.phase != CLOSED:
            self.transport.write(CONTINUE)
            self._release_pace()

    def body_deadline(self) -> None:
        """A body is arriving: it ends at the idle timeout or at the end of the rate window."""
        if self.arrival is not None:
            self.deadline = self.arrival.deadline(self.loop.time())

    def _release_pace(self) -> None:
        if self.arrival is not None:
            deadline = self.arrival.release(self.loop.time())
            if deadline is not None:
                self.deadline = deadline

    def _abandon_body(self) -> None:
        # The handler will not read the rest of this body: the connection cannot be reused.
        exchange.last_answer(self)

    # flow control

    def _pause_for_body(self) -> None:
        self.pause_reading(BODY)

    def _resume_for_body(self) -> None:
        self.resume_reading(BODY)

    def pause_reading(self, reason: int) -> None:
        if self.flow.pause_reading(reason) and self.arrival is not None:
            self.arrival.hold()  # not reading is our doing, not the client's

    def resume_reading(self, reason: int) -> None:
        arrival = self.arrival
        if self.flow.resume_reading(reason) and arrival and not arrival.continue_pending:
            self._release_pace()

    # failure and timeouts

    def fail(self, error: GatewayError) -> None:
        """A protocol error: the requests received before it are answered in order, then the
        error, then the connection closes (nothing after the error is read)."""
        if self.phase >= ENDING:
            return
        reader = self.reader
        reader.in_head = False
        self.pause_reading(STOPPED)
        stream = self.body_stream
        if stream is not None:
            # The error is in a body being read: the request reading it answers it.
            self.body_stream = self.arrival = None
            stream.fail(error)
            self.end()
            return
        fresh, reader.fresh = reader.fresh, []
        if fresh and fresh[-1].body is None:
            fresh.pop()  # its body is where the error is: the error is its answer
        self.queue.extend(fresh)
        self.queue.append(error)
        self.end()
        if self.task is None:
            exchange.start_next(self)

    def bytes_unread(self) -> bool:
        """Past its deadline, whether the client's bytes wait in the socket, unread: after a
        pause the loop runs its timers before it reads, so they came in time and a 408 or an
        idle close would lose a request. Then one more sweep, a few at most per deadline
        (``timers.forgives``), so a loop that never gets to read still ends the connection.
        Asked only by the sweep, of a connection about to expire: nothing per request."""
        if self.flow.reading_paused or self.phase >= ENDING or self.transport is None:
            return False  # not reading is our own doing: nothing to wait for
        if self.spared_for != self.deadline:
            self.spared_for, self.spared = self.deadline, 0
        if not forgives(self.spared, 0.0, self._readable):
            return False
        self.spared += 1
        return True

    def _readable(self) -> bool:
        return unread(self.transport)

    def expire(self) -> None:
        arrival, now = self.arrival, self.loop.time()
        if arrival is not None:
            deadline = arrival.on_pace(now)
            if deadline is not None:
                self.deadline = deadline
                return
        if self.task is None and not self.reader.in_head and not self.queue:
            self.end()
        elif arrival is not None or self.reader.in_head:
            detail = arrival.too_slow(now) if arrival is not None else None
            self.fail(RequestTimeout(detail or "the client was too slow sending the request"))
            self.deadline = now + self.bounds.header_timeout_s

    def more_requests(self) -> bool:
        """Whether a request already received (or arriving) waits behind the current one."""
        return bool(self.queue) or self.reader.in_head

    def end_when_idle(self) -> None:
        """The server drains: an idle connection ends now, a busy one after its answers."""
        if self.task is not None or self.more_requests() or self.transport is None:
            return
        if self.phase == NEW:
            # Accepted just before the drain began, its first request may still be on its way:
            # the client gets a short while to send it (answered with Connection: close), not a
            # close before it could ask anything. The sweep ends the wait.
            self.deadline = min(self.deadline, self.loop.time() + FIRST_REQUEST_GRACE_S)
            return
        self.idle_while_draining()

    def idle_while_draining(self) -> None:
        """Nothing owed and the server drains: wait idle for the grace (a request arriving
        meanwhile is answered with ``Connection: close``), or end now without one; the sweep
        ends a connection still quiet at its deadline."""
        grace_s = self.connections.idle_grace_s
        if grace_s <= 0.0:
            self.end()
            return
        if self.phase != IDLE:
            self.to(IDLE)
        self.deadline = min(self.deadline, self.loop.time() + grace_s)
