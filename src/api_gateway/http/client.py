"""The upstream client: pooled keep-alive HTTP/1.1 connections, llhttp for parsing responses.

Socket and parser failures are translated here into ``BadGateway`` and ``UpstreamTimeout``;
nothing above this module sees an ``OSError`` or a parser exception.
"""

from __future__ import annotations

import asyncio
import select
from collections import defaultdict
from dataclasses import dataclass
from typing import Final, cast

import httptools

from api_gateway.errors import (
    BadGateway,
    ConnectFailed,
    ConnectTimeout,
    GatewayError,
    UnusableResponse,
    UpstreamTimeout,
)
from api_gateway.http.body import BodyStream
from api_gateway.http.framing import ResponseFieldFilter, lower_name
from api_gateway.timers import forgives, patiently
from api_gateway.types import Body, BodySource, Headers, Response

Address = tuple[str, int]
SWEEP_S: Final = 0.05
BUFFERED_BODY_MAX: Final = 64 * 1024
INFINITY: Final = float("inf")
IDLE_SWEEP_TICKS: Final = 20


class ConnectionGone(ConnectFailed):
    """A connection found closed before any byte of the request was written to it."""


# Requests that may be sent again when a pooled connection turns out to be dead (RFC 9110 9.2.2).
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class PastTheEnd(Exception):
    """Raised from a parser callback: a byte arrived after the response was complete."""


class HeadTooLarge(Exception):
    """Raised from a parser callback: the response's fields passed a cap."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    connect_timeout_s: float = 5.0
    max_idle_per_instance: int = 64
    idle_timeout_s: float = 30.0
    # Caps on a response's fields (interim heads and trailers included): bytes and field lines.
    max_head_bytes: int = 65536
    max_head_fields: int = 100
    # Response fields never passed on: exact lower-case names, and name prefixes.
    dropped_fields: frozenset[bytes] = frozenset()
    dropped_prefixes: tuple[bytes, ...] = ()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; serves one exchange at a time."""

    def __init__(self, pool: UpstreamPool, address: Address) -> None:
        self.pool, self.address = pool, address
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fields = pool.fields
        self.head_cap, self.fields_cap = pool.settings.max_head_bytes, pool.settings.max_head_fields
        self.poller: select.poll | None = None
        self.closed = False
        self.idle_since = 0.0
        self.deadline = 0.0
        self.timeout_s = 0.0
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reconnected = False  # made to replace a pooled connection that was found dead
        self.forgiven = 0  # sweeps past the deadline that found the answer unread (per exchange)
        self._reset(None, False)

    def _reset(self, future: asyncio.Future[Response] | None, head: bool) -> None:
        self.future = future
        self.head_request = head
        self.status = 0
        self._reset_head()
        self.chunks: list[bytes] = []
        self.stream: BodyStream | None = None
        self.headers_done = False
        self.complete = False
        self.interim = False
        self.got_bytes = False
        self.body_sent = True
        self.sender: asyncio.Task[None] | None = None
        self.keep_alive = True
        self.until_close = False
        self.switched = False  # a 101: the connection now speaks another protocol
        self.refusal: GatewayError | None = None
        # Counted over every head of the exchange (interim ones too) and its trailers.
        self.head_bytes = 0
        self.body_read = False
        self.forgiven = 0
        self.field_bytes = 0
        self.field_count = 0

    def _reset_head(self) -> None:
        self.headers: Headers = []
        self.length: bytes | None = None
        self.chunked = False
        self.small_body = False
        # Fields a Connection header names (hop-by-hop, not passed on); None while there are none.
        self.connection_tokens: set[bytes] | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self.pool.busy.discard(self)
        if self.until_close and not self.complete:
            # A body delimited by the end of the connection (no length, not chunked) is done.
            self.keep_alive = False
            self.on_message_complete()
            self._resolve()
        if not self.complete:
            reason = "before answering" if not self.headers_done else "in the middle of the body"
            self.fail(BadGateway(f"the upstream closed the connection {reason}"))
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(BadGateway("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.stream is not None:
            # A streaming body may take long in all, but not stall: the timeout is per read.
            self.deadline = self.loop.time() + self.timeout_s
        if self.future is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.body_read = False
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self._parser_stopped(exc):
                return
        else:
            if self.body_read and self.headers_done:
                self.head_bytes = 0
            elif not self.complete:
                # Reads in a row that carried nothing of the body (a head, interim heads,
                # trailers, chunk extensions) count against the cap as they arrive: a field
                # still unfinished is not seen by on_header, and llhttp would go on
                # concatenating its pieces.
                self.head_bytes += len(data)
                if self.head_bytes > self.head_cap:
                    self._refuse(self._too_large())
                    return
        if self.headers_done and (self.complete or not self.small_body):
            self._resolve()
        if self.complete:
            # The exchange is over: hand the connection back (or drop it) only now, after
            # the response was resolved, so the next exchange starts from a clean state.
            self.pool.busy.discard(self)
            if self.keep_alive and self.body_sent:
                self.pool.release(self)
            else:
                self.close()

    def _parser_stopped(self, exc: Exception) -> bool:
        """The parser stopped before the end of ``data``: whether the exchange goes on."""
        if self.switched:
            # The gateway never asks for an upgrade (Upgrade is hop-by-hop and removed), so no
            # one is there to take the tunnel over: an answer to a question not asked.
            self._refuse(UnusableResponse("the upstream switched protocols without being asked"))
            return False
        if self.refusal is not None:
            self._refuse(self.refusal)
            return False
        if self.complete:
            # Bytes after a complete response (a second response, more body, garbage): the
            # response stands as declared; the connection is out of step and must not be reused.
            self.keep_alive = False
            return True
        self._refuse(BadGateway(f"the upstream sent an invalid response: {exc}"))
        return False

    def _refuse(self, error: GatewayError) -> None:
        self.fail(error)
        self.close()

    def _too_large(self) -> UnusableResponse:
        caps = f"{self.head_cap} bytes or {self.fields_cap} lines"
        return UnusableResponse(f"the upstream's response fields exceed {caps}")

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise PastTheEnd

    def on_header(self, name: bytes, value: bytes) -> None:
        self.field_count += 1
        self.field_bytes += len(name) + len(value) + 4  # as on the wire: ": " and CRLF
        if self.field_count > self.fields_cap or self.field_bytes > self.head_cap:
            self.refusal = self._too_large()
            raise HeadTooLarge
        if self.headers_done:
            return  # a trailer: never merged into the head (RFC 9110 §6.5.1), not passed on
        name = lower_name(name)
        passed = self.fields.passed.get(name)
        if passed is None:
            passed = self.fields.decide(name)
        if passed:
            self.headers.append((name, value))
        elif name == b"content-length":
            self.length = value
        elif name == b"transfer-encoding":
            self.chunked = True
        # Nearly every upstream sends a plain keep-alive or close: nothing to split.
        elif name == b"connection" and value.lower() not in (b"keep-alive", b"close"):
            tokens = {t.strip().lower() for t in value.split(b",")} - {b"", b"close", b"keep-alive"}
            if self.connection_tokens is None:
                self.connection_tokens = tokens
            else:
                self.connection_tokens |= tokens

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101:
            self.status, self.switched, self.keep_alive = status, True, False
            return
        if status < 200:
            # An interim response (100 Continue, 103): wait for the final one.
            self.interim = True
            self._reset_head()
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()
        self.until_close = status not in (204, 304) and self.length is None and not self.chunked
        # A small body of known length is waited for and handed over as bytes: a stream for a
        # body that merely spans two reads would cost far more than buffering it.
        self.small_body = self.length is not None and int(self.length) <= BUFFERED_BODY_MAX
        tokens = self.connection_tokens
        if tokens:
            self.headers = [h for h in self.headers if h[0] not in tokens]
        if self.head_request:
            # llhttp cannot be told the response is to HEAD; it would wait for the body.
            self.keep_alive = False
            self.on_message_complete()

    def on_body(self, chunk: bytes) -> None:
        if self.complete:
            raise PastTheEnd  # after the head of an answer to HEAD: that answer has no body
        self.body_read = True
        if self.stream is not None:
            self.stream.feed(chunk)
        else:
            self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.complete:
            return
        self.complete = True
        if self.stream is not None:
            self.stream.feed_eof()
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            self.keep_alive = False

    # exchange

    def _resolve(self) -> None:
        future = self.future
        if future is None or future.done():
            return
        if self.complete:
            self.pool.busy.discard(self)
            chunks = self.chunks
            body: Body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            stream = BodyStream(self._pause_reading, self._resume_reading, self.close)
            for chunk in self.chunks:
                stream.feed(chunk)
            self.chunks = []
            self.stream = stream
            self.deadline = self.loop.time() + self.timeout_s
            body = stream
        response = Response(self.status, self.headers, body)
        response.length = self.length
        future.set_result(response)

    def fail(self, error: GatewayError) -> None:
        future = self.future
        self.pool.busy.discard(self)
        if future is not None and not future.done():
            future.set_exception(error)
        elif self.stream is not None and not self.complete:
            self.stream.fail(error)

    def write(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.closed or transport.is_closing():
            raise ConnectionGone("the upstream closed the connection before the request went out")
        try:
            transport.write(data)
        except RuntimeError as exc:  # uvloop: the handle closed before connection_lost ran
            raise ConnectionGone("the upstream closed the connection") from exc

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def unread_answer(self) -> bool:
        """Past the deadline, whether the upstream's bytes are in the socket, unread: they came
        in time, the loop was busy (a heavy request). Then one more sweep, a few at most per
        exchange: the deadline is the client's, real time, never extended for a silent peer."""
        poller = self.poller
        if poller is None or not forgives(self.forgiven, 0.0, lambda: bool(poller.poll(0))):
            return False
        self.forgiven += 1
        return True

    def on_timeout(self) -> None:
        self.fail(UpstreamTimeout("the upstream did not answer in time"))
        self.pool.busy.discard(self)
        self.close()


class UpstreamPool:
    """Idle keep-alive connections per upstream address, reused most-recent first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: PoolSettings) -> None:
        self.loop, self.settings = loop, settings
        self.fields = ResponseFieldFilter(settings.dropped_fields, settings.dropped_prefixes)
        self.idle: defaultdict[Address, list[UpstreamConnection]] = defaultdict(list)
        # Connections waiting for a response head, checked against their deadline by a sweep
        # rather than a timer per request (timeouts are seconds; a tick of slack is fine).
        self.busy: set[UpstreamConnection] = set()
        self._ticks = 0
        self._sweeper = loop.call_later(SWEEP_S, self._sweep)

    async def request(
        self,
        address: Address,
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
    ) -> Response:
        """Send a complete request head and its body; return once the response head is in.

        A pooled connection that turns out to have been closed by the upstream before it
        answered anything is retried once on a new connection, for idempotent requests only.
        """
        replayable = method in IDEMPOTENT and isinstance(body, bytes)
        connection = self._acquire(address)
        may_retry = connection is not None and replayable
        if connection is None:
            connection = await self._connect(address, timeout_s)
        while True:
            try:
                future = self._send(connection, head, body, chunked, timeout_s, method)
            except ConnectionGone:
                # Nothing went out: safe to try a new connection whatever the method, once.
                if connection.reconnected:
                    raise
                connection = await self._connect(address, timeout_s)
                connection.reconnected = True
                continue
            try:
                return await future
            except BadGateway:
                if not may_retry or connection.got_bytes:
                    raise
            except asyncio.CancelledError:
                self.busy.discard(connection)
                connection.close()
                raise
            may_retry = False
            connection = await self._connect(address, timeout_s)

    def _send(
        self,
        connection: UpstreamConnection,
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
    ) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = self.loop.create_future()
        connection._reset(future, method == "HEAD")
        connection.timeout_s = timeout_s
        if isinstance(body, bytes):
            connection.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                connection.write(body)
        else:
            connection.write(head)
            connection.body_sent = False
            connection.sender = self.loop.create_task(
                _send_body(connection, body, chunked, timeout_s)
            )
        # The upstream's time starts once it has the whole request: a slow upload is the
        # client's delay (the server's body timeout guards it), not the upstream's.
        connection.deadline = self.loop.time() + timeout_s if connection.body_sent else INFINITY
        self.busy.add(connection)
        return future

    def _acquire(self, address: Address) -> UpstreamConnection | None:
        """The most recently used idle connection still open and with nothing to read.

        The kernel is asked (one poll, ~0.5 µs) because the loop may not have read yet what
        arrived on an idle connection: the upstream's FIN (it closed right after answering,
        without ``Connection: close``), or bytes past the end of its last response, which the
        next request would take for the start of its own response.
        """
        idle = self.idle.get(address)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            # A peer's close may be known to the transport before connection_lost has run.
            if connection.closed or transport is None or transport.is_closing():
                continue
            poller = connection.poller
            if poller is not None and poller.poll(0):
                connection.close()  # an idle connection has nothing to read unless it is over
                continue
            return connection
        return None

    async def _connect(self, address: Address, timeout_s: float) -> UpstreamConnection:
        host, port = address
        try:
            # A loop paused while connecting is not an unreachable instance: one more bound.
            _, connection = await patiently(
                self.loop.create_connection(lambda: UpstreamConnection(self, address), host, port),
                min(self.settings.connect_timeout_s, timeout_s),
                max_extensions=1,
            )
        except TimeoutError as exc:
            # The detail reaches the client (502/504, /ready, aggregate meta): it never names the
            # instance, whose address the access log and the health log carry for operators.
            raise ConnectTimeout("connecting to the upstream timed out") from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConnectFailed(f"cannot connect to the upstream: {reason}") from exc
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        connection.future = None
        if connection.closed:
            return
        idle = self.idle[connection.address]
        if len(idle) >= self.settings.max_idle_per_instance:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self.idle.get(connection.address)
        if idle and connection in idle:
            idle.remove(connection)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in [c for c in self.busy if c.deadline < now]:
            if not connection.unread_answer():
                connection.on_timeout()
        self._ticks += 1
        if self._ticks % IDLE_SWEEP_TICKS == 0:
            cutoff = now - self.settings.idle_timeout_s
            for idle in self.idle.values():
                while idle and idle[0].idle_since < cutoff:
                    idle.pop(0).close()
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def close(self) -> None:
        self._sweeper.cancel()
        for idle in self.idle.values():
            for connection in list(idle):
                connection.close()
        self.idle.clear()


async def _send_body(
    connection: UpstreamConnection, body: BodySource, chunked: bool, timeout_s: float
) -> None:
    try:
        async for chunk in body:
            if not chunk:
                continue
            connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if connection.write_paused:
                await connection.drain()
        if chunked:
            connection.write(b"0\r\n\r\n")
        connection.body_sent = True
        connection.deadline = connection.loop.time() + timeout_s
    except GatewayError as error:
        connection.fail(error)
        connection.close()
    except OSError:
        connection.fail(BadGateway("the client's request body could not be forwarded"))
        connection.close()
