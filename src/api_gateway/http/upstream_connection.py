"""One pooled keep-alive connection to an upstream instance, one exchange at a time: it writes
the request, parses the response with llhttp and hands it over, its body as bytes or a stream.

Its phases and the moves between them are in ``upstream_phases.py``; every move goes through
``_to``. An exchange ends one of two ways: ``_finish``, the graceful end (the response is
complete: back to the pool, or closed if it cannot be reused), or ``abort`` (the exchange fails
with an error and the connection is closed). Socket and parser failures become ``BadGateway``
or ``UnusableResponse`` here; nothing above sees an ``OSError`` or a parser exception.
"""

from __future__ import annotations

import asyncio
import select
from typing import TYPE_CHECKING, Final, cast

import httptools

from api_gateway.errors import (
    THE_SERVICE,
    ConnectFailed,
    GatewayError,
    UpstreamReset,
)
from api_gateway.http import upstream_ends
from api_gateway.http.body import BodyStream
from api_gateway.http.flow import Flow
from api_gateway.http.response_head import ResponseHead
from api_gateway.http.upstream_phases import (
    AWAITING_HEAD,
    CLOSED,
    CONNECTING,
    DONE,
    IDLE,
    READING_BODY,
    SWITCHED,
    moved,
)
from api_gateway.types import Body, Response

if TYPE_CHECKING:
    from api_gateway.http.client import UpstreamPool

Address = tuple[str, int]
BUFFERED_BODY_MAX: Final = 64 * 1024
# A request body this large goes out in a write of its own rather than copied onto its head.
SEPARATE_BODY_MIN: Final = 65536
INFINITY: Final = float("inf")
# The longest quiet gap of an event stream (text/event-stream) whose route sets no bound.
EVENT_STREAM_IDLE_S: Final = 300.0


class ConnectionGone(ConnectFailed):
    """A connection found closed before any byte of the request was written to it."""

    reason = "reset"


class PastTheEnd(Exception):
    """Raised from a parser callback: a byte arrived after the response was complete."""


class HeadTooLarge(Exception):
    """Raised from a parser callback: the response's fields passed a cap."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; serves one exchange at a time."""

    def __init__(self, pool: UpstreamPool, address: Address) -> None:
        self.pool, self.address = pool, address
        # Its address's list of idle connections in the pool, looked up once, not per release.
        self.idle_list = pool.idle[address]
        self.loop = pool.loop
        self.phase = CONNECTING
        self.transport: asyncio.Transport | None = None
        self.flow = Flow(pool.loop)
        self.parser = httptools.HttpResponseParser(self)
        settings = pool.settings
        host, port = address
        self.head = ResponseHead(
            pool.fields, settings.max_head_bytes, settings.max_head_fields, f"{host}:{port}"
        )
        self.poller: select.poll | None = None
        self.idle_since = 0.0
        self.deadline = 0.0
        self.timeout_s = 0.0
        self.reconnected = False  # made to replace a pooled connection that was found dead
        self.asked_upgrade = False  # the exchange is a WebSocket handshake
        # The bound on the gap between two reads of a streamed body, once its head is in, when
        # the route sets one; an event stream gets EVENT_STREAM_IDLE_S when it does not.
        self.stream_idle_s = 0.0
        self._begin(None, False)

    def _to(self, phase: int) -> None:
        self.phase = moved(self.phase, phase)

    def _begin(self, future: asyncio.Future[Response] | None, to_head: bool) -> None:
        """A new exchange's state: ``future`` gets the response once its head is in."""
        self.future = future
        self.head_request = to_head
        self.status = 0
        self.head.begin()
        self.small_body = False
        self.chunks: list[bytes] = []
        self.stream: BodyStream | None = None
        self.got_bytes = False
        self.sending = False  # the request's body is still going out, from ``sender``
        self.sender: asyncio.Task[None] | None = None
        self.reusable = True  # what the response allows; DONE decides with ``sending``
        self.until_close = False
        self.refusal: GatewayError | None = None
        self.head_bytes = 0  # read in a row with nothing of the body: fields still arriving
        self.body_read = False
        self.forgiven = 0  # sweeps past the deadline that found the answer unread

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.flow.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)
        self._to(IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        self.pool.busy.discard(self)
        phase = self.phase
        if phase == READING_BODY and self.until_close:
            # A body delimited by the end of the connection (no length, not chunked) is done.
            self.reusable = False
            self.on_message_complete()
            self._resolve()
        elif phase in (AWAITING_HEAD, READING_BODY):
            reason = "before answering" if phase == AWAITING_HEAD else "in the middle of the body"
            self._fail(UpstreamReset(f"{THE_SERVICE} closed the connection {reason}"))
        self._to(CLOSED)
        self.flow.lost(UpstreamReset(f"{THE_SERVICE} closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.stream is not None:
            # A streaming body may take long in all, but not stall: the timeout is per read.
            self.deadline = self.loop.time() + self.timeout_s
        if self.phase == IDLE:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.body_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.phase == SWITCHED and self.asked_upgrade:
                upstream_ends.switch(self, data[exc.args[0] :])
                return
            if not upstream_ends.parser_stopped(self, exc):
                return
        except httptools.HttpParserError as exc:
            if not upstream_ends.parser_stopped(self, exc):
                return
        else:
            if self.body_read:
                self.head_bytes = 0
            elif self.phase != DONE:
                # Reads in a row that carried nothing of the body (a head, interim heads,
                # trailers, chunk extensions) count against the cap as they arrive: a field
                # still unfinished is not seen by on_header, and llhttp would go on
                # concatenating its pieces.
                self.head_bytes += len(data)
                if self.head_bytes > self.head.byte_cap:
                    self.abort(self.head.too_large())
                    return
        phase = self.phase
        if phase == DONE or (phase == READING_BODY and not self.small_body):
            self._resolve()
        if phase == DONE:
            # Only now, after the response was resolved, so the next exchange starts clean.
            self._finish()

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self.phase == DONE:
            raise PastTheEnd

    def on_header(self, name: bytes, value: bytes) -> None:
        head = self.head
        if not head.add(name, value, self.phase == AWAITING_HEAD):  # else a trailer
            self.refusal = head.too_large()
            raise HeadTooLarge

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101:
            self.status, self.reusable = status, False
            self._to(SWITCHED)
            return
        if status < 200:
            # An interim response (100 Continue, 103): the phase stays, the final head follows.
            self.head.clear()
            return
        self._to(READING_BODY)
        self.status = status
        self.reusable = self.parser.should_keep_alive()
        head = self.head
        length = head.length
        self.until_close = status not in (204, 304) and length is None and not head.chunked
        # A small body of known length is waited for and handed over as bytes: a stream for a
        # body that merely spans two reads would cost far more than buffering it.
        self.small_body = length is not None and int(length) <= BUFFERED_BODY_MAX
        head.complete()
        if self.head_request:
            # llhttp cannot be told the response is to HEAD; it would wait for the body.
            self.reusable = False
            self.on_message_complete()

    def on_body(self, chunk: bytes) -> None:
        if self.phase == DONE:
            raise PastTheEnd  # after the head of an answer to HEAD: that answer has no body
        self.body_read = True
        if self.stream is not None:
            self.stream.feed(chunk)
        else:
            self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        phase = self.phase
        if phase == READING_BODY:
            self._to(DONE)
            if self.stream is not None:
                self.stream.feed_eof()
        elif phase != SWITCHED:
            return  # AWAITING_HEAD: an interim response ended; DONE: an answer to HEAD did
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()  # the upstream answered without the rest of the body
            self.reusable = False

    # the exchange

    def send(
        self,
        request_head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
        upgrade: bool = False,
    ) -> asyncio.Future[Response]:
        """Begin an exchange: write the request (a body that streams goes out from a task of
        its own); the future resolves once the response head is in. With ``upgrade`` (a
        WebSocket handshake) a ``101`` is the answer hoped for, not a refusal."""
        future: asyncio.Future[Response] = self.loop.create_future()
        self._begin(future, method == "HEAD")
        self.asked_upgrade = upgrade
        self.timeout_s = timeout_s
        if isinstance(body, bytes):
            large = len(body) >= SEPARATE_BODY_MIN
            self.write(request_head if large else request_head + body)
            if large:
                self.write(body)
        else:
            self.write(request_head)
            self.sending = True
            self.sender = self.loop.create_task(upstream_ends.send_body(self, body, chunked))
        self._to(AWAITING_HEAD)  # only once written: a connection found gone stays as it was
        # The upstream's time starts once it has the whole request: a slow upload is the
        # client's delay (the server's body timeout guards it), not the upstream's.
        self.deadline = INFINITY if self.sending else self.loop.time() + timeout_s
        self.pool.busy.add(self)
        return future

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def write(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.phase == CLOSED or transport.is_closing():
            raise ConnectionGone(f"{THE_SERVICE} closed the connection before the request went out")
        try:
            transport.write(data)
        except RuntimeError as exc:  # uvloop: the handle closed before connection_lost ran
            raise ConnectionGone(f"{THE_SERVICE} closed the connection") from exc

    def _resolve(self) -> None:
        future = self.future
        if future is None or future.done():
            return
        if self.phase == DONE:  # out of ``busy`` by ``_finish`` or ``connection_lost``
            chunks = self.chunks
            body: Body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            stream = BodyStream(self._pause_reading, self._resume_reading, self.close)
            for chunk in self.chunks:
                stream.feed(chunk)
            self.chunks = []
            self.stream = stream
            if self.stream_idle_s or self.head.event_stream():
                # A stream of events may be quiet long and often: the request's deadline no
                # longer applies, only the gap between two reads.
                self.timeout_s = self.stream_idle_s or EVENT_STREAM_IDLE_S
            self.deadline = self.loop.time() + self.timeout_s
            body = stream
        response = Response(self.status, self.head.headers, body)
        response.length = self.head.length
        future.set_result(response)

    def _finish(self) -> None:
        """The graceful end of an exchange whose response was handed over: back to the pool
        when the response and the request both allow it, else closed."""
        self.pool.busy.discard(self)
        if self.reusable and not self.sending:
            self._to(IDLE)
            self.future = None
            self.pool.release(self)
        else:
            self.close()

    def abort(self, error: GatewayError) -> None:
        """End the exchange with ``error`` (its response, or its body if that streams) and
        close the connection, which is never reused."""
        self._fail(error)
        self.close()

    def _fail(self, error: GatewayError) -> None:
        future = self.future
        self.pool.busy.discard(self)
        if future is not None and not future.done():
            future.set_exception(error)
        elif self.stream is not None and self.phase != DONE:
            self.stream.fail(error)

    def close(self) -> None:
        """Close the socket; ``connection_lost`` follows, and with it CLOSED."""
        if self.transport is not None and self.phase != CLOSED:
            self.transport.close()

    # BodyStream's producer side (it takes callables returning None; Flow's return a bool)

    def _pause_reading(self) -> None:
        self.flow.pause_reading()

    def _resume_reading(self) -> None:
        self.flow.resume_reading()
