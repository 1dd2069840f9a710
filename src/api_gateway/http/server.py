"""The HTTP/1.1 server: one ``asyncio.Protocol`` per connection, llhttp for parsing.

A request is dispatched as soon as its head is parsed; a body that is complete in the bytes
already received is handed over as ``bytes`` (the common case costs no stream), otherwise as a
``BodyStream`` with back-pressure. Pipelined requests queue and are answered in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final, Protocol, cast

import httptools

from api_gateway.errors import (
    GatewayError,
    HeadersTooLarge,
    MalformedRequest,
    RequestTimeout,
    UriTooLong,
)
from api_gateway.http.body import BodyPace, BodyStream
from api_gateway.http.framing import (
    CONTINUE,
    PLAIN_CONNECTION,
    REQUEST_FRAMING,
    STATUS_LINES,
    RequestFraming,
    lower_name,
    status_line,
)
from api_gateway.timers import forgives, unread
from api_gateway.types import BodySource, Headers, Request, Response

log = logging.getLogger("api_gateway.http")

MAX_PIPELINED: Final = 32
TASK_NAME: Final = "http-request"
# A request whose body is still arriving: not counted as in flight by the overload monitor
# until the body is complete (clients that send slowly must not tighten everyone's limits).
RECEIVING_TASK_NAME: Final = "http-request-receiving"
# While draining, how long a connection that has not sent its first request may still send it.
FIRST_REQUEST_GRACE_S: Final = 1.0
INFINITY: Final = float("inf")
# Method, spaces, version and CRLF of a request line: what it holds besides the URI.
REQUEST_LINE_BYTES: Final = 32

NO_BODY_STATUSES: Final = frozenset({204, 304})
# The usual methods as shared strings: no decoding, and their hashes are computed once for every
# set and dict lookup after the parser.
METHODS: Final = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
}


class App(Protocol):
    def handle(self, request: Request) -> Awaitable[Response]: ...

    def reject(self, error: GatewayError, peer_ip: str) -> Response: ...


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 16384
    max_header_count: int = 100
    max_uri_bytes: int = 8192
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 75.0
    body_timeout_s: float = 60.0
    # 0: no minimum rate, only the body timeout between reads.
    min_body_rate_bytes_per_s: int = 500
    body_rate_window_s: float = 20.0


class Connections:
    """Every open connection of one server, swept once a second for expired deadlines (a
    connection whose client bytes wait unread is spared a few sweeps: the loop was paused)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open: set[HttpConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = loop.call_later(1.0, self._sweep)
        self.drained: asyncio.Event | None = None
        # Shutting down: each connection closes once it has answered what it already received.
        self.draining = False

    def discard(self, connection: HttpConnection) -> None:
        self.open.discard(connection)
        if not self.open and self.drained is not None:
            self.drained.set()

    def _sweep(self) -> None:
        self.expire_due(self.loop.time())
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def expire_due(self, now: float) -> None:
        for connection in list(self.open):
            if connection.deadline < now and not connection.bytes_unread():
                connection.expire()

    def begin_drain(self) -> None:
        """From now on every connection closes once it has answered what it received; idle
        ones close now. Connections accepted later (the listener's queue) are answered too."""
        self.draining = True
        for connection in list(self.open):
            connection.close_when_idle()

    async def shutdown(self, grace_s: float) -> None:
        """Once the listener is closed: let busy connections finish for up to ``grace_s``, then
        cut the rest."""
        if not self.draining:
            self.begin_drain()
        self.drained = asyncio.Event()
        if self.open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), grace_s)
        if self.open:
            log.warning("grace period over: cutting %d connections", len(self.open))
        for connection in list(self.open):
            connection.cut()
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Let the cut connections' callbacks run, cancelling their requests' tasks.
        await asyncio.sleep(0)


class HttpConnection(asyncio.Protocol):
    def __init__(
        self, app: App, limits: ServerLimits, connections: Connections, server_port: int
    ) -> None:
        self.app, self.limits, self.connections = app, limits, connections
        self.loop = connections.loop
        self.server_port = server_port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.queue: deque[Request | GatewayError] = deque()
        self.fresh: list[Request] = []
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        # Nothing more is parsed (a protocol error, an upgrade): what was received before is
        # answered in order, and the last answer closes the connection.
        self.parsing_done = False
        self.served = False  # a request has begun on this connection
        self.reading_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.deadline = float("inf")
        # Sweeps that spared this connection past ``spared_for`` (its deadline then): bytes unread.
        self.spared_for = INFINITY
        self.spared = 0
        self.callback_error: GatewayError | None = None
        # The limits checked for every request, read from the connection rather than ``limits``.
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.max_uri_bytes = limits.max_uri_bytes
        # Per-message parse state.
        self.in_head = False
        self.url = b""
        self.headers: Headers = []
        # Created only for a head with framing fields besides Host (most requests have none).
        self.framing: RequestFraming | None = None
        self.plain_connection = False
        self.hosts = 0
        self.header_bytes = 0
        self.header_count = 0
        self.head_bytes = 0
        # Where the parser is in the current read, as far as its callbacks tell (a lower bound:
        # optional whitespace and chunk-size digits are not reported), and where the current
        # head began in it: what follows is head, what precedes it was the messages before.
        self.read_used = 0
        self.head_start = 0
        self.head_in_read = False
        self.unreported = 0
        self.chunk_from = 0
        self.body_request: Request | None = None
        self.body_chunks: list[bytes] = []
        self.body_stream: BodyStream | None = None
        self.pace: BodyPace | None = None
        self.body_idle_deadline = INFINITY
        self.expect_continue = False
        self.continue_pending = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        self.connections.open.add(self)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        if self.connections.draining:
            # Taken from the listener's queue during the drain: its request, if any, is usually
            # here already; a client that has sent nothing gets no more than the others.
            self.deadline = min(self.deadline, self.loop.time() + FIRST_REQUEST_GRACE_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        if self.task is not None:
            self.task.cancel()
        if self.body_stream is not None:
            self.body_stream.fail(ConnectionResetError("client closed the connection"))
        self._release_drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drain()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.parsing_done:
            return
        if self.body_stream is not None:
            self._body_deadline()
        self.read_used = 0
        self.head_in_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Protocol upgrades are not proxied: answer the request, then close.
            self.parsing_done = True
        except httptools.HttpParserError as exc:
            self.fail(self.callback_error or MalformedRequest(f"malformed request: {exc}"))
            return
        if self.in_head:
            if self._head_too_large(len(data)):
                self.fail(HeadersTooLarge(f"the headers exceed {self.max_header_bytes} bytes"))
                return
        elif self.body_request is not None and self._framing_too_large(len(data)):
            self.fail(HeadersTooLarge(f"the chunk framing exceeds {self.max_header_bytes} bytes"))
            return
        if self.fresh:
            self._dispatch_fresh()

    def _head_too_large(self, read: int) -> bool:
        """Whether the head still arriving is past the cap, counting a line not yet finished
        (llhttp reports a field only once it is complete)."""
        if self.head_in_read:
            # Only the bytes from the head's start: not the body or the heads before it.
            self.head_bytes = read - self.head_start
        else:
            self.head_bytes += read
        # The request line is capped by the URI limit; what follows it by the header limit.
        return self.head_bytes - len(self.url) - REQUEST_LINE_BYTES > self.max_header_bytes

    def _framing_too_large(self, read: int) -> bool:
        """Whether a body's bytes that are not body (a trailer line or chunk extension still
        arriving, which llhttp reports only once complete, if at all) pass the header cap."""
        if self.read_used:
            self.unreported = read - self.read_used
        else:
            self.unreported += read
        return self.unreported > self.max_header_bytes

    # llhttp callbacks

    def on_message_begin(self) -> None:
        # The header timeout runs from the request line, not from any byte: llhttp skips empty
        # lines before it, and they must not keep an idle connection open forever.
        if self.task is None:
            self.deadline = self.loop.time() + self.limits.header_timeout_s
        self.in_head = True
        self.served = True
        self.url = b""
        self.headers = []
        self.framing = None
        self.plain_connection = False
        self.hosts = 0
        self.header_bytes = 0
        self.header_count = 0
        self.head_bytes = 0
        self.head_start = self.read_used
        self.head_in_read = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_uri_bytes:
            self._callback_fail(UriTooLong(f"the URI exceeds {self.max_uri_bytes} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp calls this once per field: the common case is kept to one test per limit.
        self.header_bytes += len(name) + len(value) + 4
        self.header_count += 1
        if self.header_bytes > self.max_header_bytes or self.header_count > self.max_header_count:
            self._headers_too_large()
        if not self.in_head:
            # A trailer field, after a chunked body. Merged into the head it would slip past
            # every check made on the head (a second Host, say), so it is counted and dropped:
            # RFC 9110 §6.5.1 lets a recipient discard trailers.
            self.read_used += len(name) + len(value) + 3
            return
        name = lower_name(name)
        if name not in REQUEST_FRAMING:
            self.headers.append((name, value))
        elif name == b"host":
            self.hosts += 1
            self.headers.append((name, value))
        elif name == b"connection" and value.lower() in PLAIN_CONNECTION:
            # llhttp applies it; it names no field, so no framing state is needed for it.
            self.plain_connection = True
        else:
            framing = self.framing
            if framing is None:
                framing = self.framing = RequestFraming()
            if framing.take(name, value):
                self.headers.append((name, value))

    def _headers_too_large(self) -> None:
        if self.header_bytes > self.max_header_bytes:
            self._callback_fail(
                HeadersTooLarge(f"the headers exceed {self.max_header_bytes} bytes")
            )
        self._callback_fail(HeadersTooLarge(f"more than {self.max_header_count} header fields"))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        keep_alive = parser.should_keep_alive()
        framing = self.framing
        if keep_alive and framing is None and not self.plain_connection:
            # llhttp accepts HTTP/0.9, 1.0, 1.1 and 2.0 only, and keeps a connection alive by
            # default for 1.1 alone: asking for the version string costs more than all of this.
            version = "1.1"
        else:
            version = parser.get_http_version()
        if framing is None:
            if version != "1.1" or self.hosts != 1:
                # Rare enough to build the full check for: HTTP/1.0, or not exactly one Host.
                framing = RequestFraming()
                self._check_framing(framing, version)
            headers = self.headers
            content_length = None
        else:
            self._check_framing(framing, version)
            headers = framing.end_to_end(self.headers)
            content_length = framing.content_length
        method = parser.get_method()
        # The head's least possible size: "name:value" and CRLF per field, the request line,
        # the empty line. What it used of this read is that, less what earlier reads brought.
        head_size = len(method) + len(self.url) + 14 + self.header_bytes - self.header_count
        if self.head_in_read:
            self.read_used = self.head_start + head_size
        else:
            self.read_used = max(0, head_size - self.head_bytes)
        request = Request(
            METHODS.get(method) or method.decode("ascii"),
            self.url,
            headers,
            b"",
            self.peer_ip,
            version,
            content_length,
            self.server_port,
            perf_counter(),
        )
        request.keep_alive = keep_alive
        if framing is not None and (framing.encodings or content_length):
            self.unreported = 0
            self.body_request = request
            self.body_chunks = []
            request.body = None  # type: ignore[assignment]
            self.expect_continue = framing.expect_continue and version == "1.1"
        self.fresh.append(request)

    def _check_framing(self, framing: RequestFraming, version: str) -> None:
        framing.hosts = self.hosts
        try:
            framing.check(version)
        except GatewayError as error:
            self._callback_fail(error)

    def on_body(self, chunk: bytes) -> None:
        self.read_used += len(chunk)
        if self.body_stream is not None:
            self.body_stream.feed(chunk)
        else:
            self.body_chunks.append(chunk)

    def on_chunk_header(self) -> None:
        self.read_used += 3  # at least one digit and CRLF
        self.chunk_from = self.read_used

    def on_chunk_complete(self) -> None:
        # The size line's other digits, known once the chunk is (if it began in this read: a
        # chunk from an earlier one leaves at most a few digits unreported or over-reported).
        size = self.read_used - self.chunk_from
        self.read_used += 2 + (max(size.bit_length() - 1, 0) >> 2)

    def on_message_complete(self) -> None:
        if self.body_stream is not None:
            self.body_stream.feed_eof()
            self.body_stream = None
            if self.pace is not None:
                self.pace = None
                self.deadline = self.body_idle_deadline  # no rate window left to judge
            task = self.task
            if task is not None and task.get_name() == RECEIVING_TASK_NAME:
                task.set_name(TASK_NAME)
        elif self.body_request is not None:
            chunks = self.body_chunks
            self.body_request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body_request = None
        self.body_chunks = []

    # dispatch

    def _callback_fail(self, error: GatewayError) -> None:
        self.callback_error = error
        raise error

    def _dispatch_fresh(self) -> None:
        fresh, self.fresh = self.fresh, []
        last = fresh[-1]
        if last.body is None:
            self.body_stream = self._stream_for(self.body_chunks)
            last.body = self.body_stream
            self.body_chunks = []
        if self.task is None and len(fresh) == 1 and not self.queue:
            # The common case, one request and nothing in flight, skips the queue.
            if self.reading_paused:
                self._resume_reading()
            if self.body_stream is not None:
                self._body_deadline()
                name = RECEIVING_TASK_NAME
            else:
                self.deadline = INFINITY
                name = TASK_NAME
            self.task = asyncio.Task(self._serve(last), loop=self.loop, name=name)
            return
        self.queue.extend(fresh)
        if len(self.queue) > MAX_PIPELINED and not self.reading_paused:
            self._pause_reading()
        if self.task is None:
            self._start_next()

    def _stream_for(self, buffered: list[bytes]) -> BodyStream:
        stream = BodyStream(self._pause_reading, self._resume_reading, self._abandon_body)
        for chunk in buffered:
            stream.feed(chunk)
        limits = self.limits
        now = self.loop.time()
        self.body_idle_deadline = now + limits.body_timeout_s
        if limits.min_body_rate_bytes_per_s:
            pace = BodyPace(
                limits.min_body_rate_bytes_per_s, limits.body_rate_window_s, now, stream.received
            )
            self.pace = pace
            if self.reading_paused:
                pace.hold()
        self.continue_pending = self.expect_continue and not buffered
        if self.continue_pending:
            stream.on_first_read(self._send_continue)
            if self.pace is not None:
                self.pace.hold()  # the client waits for our 100 Continue
        return stream

    def _send_continue(self) -> None:
        self.continue_pending = False
        if self.transport is not None and not self.closing:
            self.transport.write(CONTINUE)
            self._release_pace()

    def _body_deadline(self) -> None:
        """A body is arriving: it ends at the idle timeout or at the end of the rate window."""
        now = self.loop.time()
        self.body_idle_deadline = idle = now + self.limits.body_timeout_s
        pace = self.pace
        self.deadline = idle if pace is None else min(idle, pace.deadline)

    def _release_pace(self) -> None:
        pace, stream = self.pace, self.body_stream
        if pace is not None and stream is not None and pace.held:
            pace.release(self.loop.time(), stream.received)
            self._body_deadline()

    def _body_on_pace(self) -> bool:
        """At the sweep: whether the body still arriving may go on (its window judged)."""
        pace, stream = self.pace, self.body_stream
        now = self.loop.time()
        if pace is None or stream is None or now >= self.body_idle_deadline:
            return False
        if pace.too_slow(now, stream.received):
            return False
        self.deadline = min(self.body_idle_deadline, pace.deadline)
        return True

    def _abandon_body(self) -> None:
        # The handler will not read the rest of this body: the connection cannot be reused.
        self.closing = True

    def _start_next(self) -> None:
        item = self.queue.popleft()
        if len(self.queue) <= MAX_PIPELINED // 2 and self.reading_paused:
            self._resume_reading()
        # While a body is still arriving, the body timeout guards it; otherwise the upstream
        # call has deadlines of its own.
        if self.body_stream is not None:
            self._body_deadline()
        else:
            self.deadline = INFINITY
        # A Task built with a name skips formatting "Task-<n>" for every request.
        if isinstance(item, GatewayError):
            self.task = asyncio.Task(self._send_rejection(item), loop=self.loop, name=TASK_NAME)
        else:
            receiving = item.body is self.body_stream and self.body_stream is not None
            name = RECEIVING_TASK_NAME if receiving else TASK_NAME
            self.task = asyncio.Task(self._serve(item), loop=self.loop, name=name)

    async def _serve(self, request: Request) -> None:
        body = request.body
        try:
            response = await self.app.handle(request)
        except Exception:
            # The app answers every error itself; reaching here is a bug, and the connection,
            # in an unknown state, is dropped rather than left hanging.
            log.exception("the application failed on %s", request.method)
            self.abort()
            return
        if isinstance(body, BodyStream) and not body.complete:
            body.abort()
            self.closing = True
        if not request.keep_alive:
            self.closing = True
        pump = self._send(request.method, request.http_version, response)
        if pump is not None:
            await pump

    async def _send_rejection(self, error: GatewayError) -> None:
        self.closing = True
        pump = self._send("GET", "1.1", self.app.reject(error, self.peer_ip))
        if pump is not None:
            await pump

    def _finish(self) -> None:
        self.task = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.closing:
            transport.close()
            return
        if self.queue:
            self._start_next()
        elif self.connections.draining and not self.in_head:
            # A streamed answer whose head went out before the drain began ends the connection.
            transport.close()
        elif self.in_head:
            # The next head began while this request was in flight: it is a head, not idle.
            self.deadline = self.loop.time() + self.limits.header_timeout_s
        else:
            self.deadline = self.loop.time() + self.limits.keep_alive_timeout_s

    def _send(
        self, method: str, version: str, response: Response
    ) -> Coroutine[Any, Any, None] | None:
        """Write the response; a bytes body goes out in the same write as the head.

        Returns the body pump to await for a stream, None when all is written.
        """
        transport = self.transport
        assert transport is not None
        status = response.status
        headers = response.headers
        parts = [STATUS_LINES.get(status) or status_line(status)]
        for name, value in headers:  # pieces joined once below, not a bytes object per header
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
        parts.append(response.rendered)
        if response.close or (self.connections.draining and not self.more_requests()):
            # While draining, the last answer a connection owes says so, and the client knows
            # to take its next request elsewhere.
            self.closing = True
        elif self.parsing_done and not self.queue:
            self.closing = True  # the last answer owed before the connection ends
        if self.closing:
            parts.append(b"connection: close\r\n")
        elif version == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        body = response.body
        bodiless = method == "HEAD" or status in NO_BODY_STATUSES or status < 200
        if not isinstance(body, bytes):
            return self._send_stream(parts, response.length, bodiless, version, body)
        if status >= 200 and status not in NO_BODY_STATUSES:
            parts += (b"content-length: ", response.length or str(len(body)).encode(), b"\r\n\r\n")
        else:
            parts.append(b"\r\n")
        if not bodiless:
            parts.append(body)
        transport.write(b"".join(parts))
        self._finish()
        return None

    async def _send_stream(
        self,
        parts: list[bytes],
        length: bytes | None,
        bodiless: bool,
        version: str,
        body: BodySource,
    ) -> None:
        transport = self.transport
        assert transport is not None
        chunked = length is None and not bodiless and version == "1.1"
        if length is not None:
            parts.append(b"content-length: %s\r\n" % length)
        elif chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif not bodiless:
            # HTTP/1.0 and no length: the end of the body is the end of the connection.
            self.closing = True
            if parts[-1] != b"connection: close\r\n":
                parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        transport.write(b"".join(parts))
        try:
            async for chunk in body:
                if bodiless or not chunk:
                    continue
                if chunked:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                if self.write_paused:
                    await self._drain()
        except (GatewayError, OSError):
            # The head is gone already: all we can do is cut the response short.
            body.abort()
            self.closing = True
            transport.abort()
            self._finish()
            return
        except asyncio.CancelledError:
            body.abort()
            raise
        except Exception:
            # A bug, not a network failure: this response is lost, never the worker.
            log.exception("streaming a response failed")
            body.abort()
            self.closing = True
            transport.abort()
            self._finish()
            return
        if chunked:
            transport.write(b"0\r\n\r\n")
        self._finish()

    # flow control and failure

    async def _drain(self) -> None:
        if self.closing and self.transport is None:
            return
        self.drain_waiter = self.loop.create_future()
        await self.drain_waiter

    def _release_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.drain_waiter = None

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
            if self.pace is not None:
                self.pace.hold()  # not reading is our doing, not the client's

    def _resume_reading(self) -> None:
        if (
            self.transport is not None
            and self.reading_paused
            and not self.closing
            and not self.parsing_done
        ):
            self.reading_paused = False
            self.transport.resume_reading()
            if self.pace is not None and not self.continue_pending:
                self._release_pace()

    def fail(self, error: GatewayError) -> None:
        """A protocol error: the requests received before it are answered in order, then the
        error, then the connection closes (nothing after the error is read)."""
        if self.parsing_done:
            return
        self.parsing_done = True
        self.in_head = False
        self._pause_reading()
        if self.body_stream is not None:
            # The error is in a body being read: the request reading it answers it.
            self.body_stream.fail(error)
            self.body_stream = None
            self.pace = None
            return
        fresh, self.fresh = self.fresh, []
        if fresh and fresh[-1].body is None:
            fresh.pop()  # its body is where the error is: the error is its answer
        self.queue.extend(fresh)
        self.queue.append(error)
        if self.task is None:
            self._start_next()

    def bytes_unread(self) -> bool:
        """Past its deadline, whether the client's bytes wait in the socket, unread: after a
        pause the loop runs its timers before it reads, so they came in time and a 408 or an
        idle close would lose a request. Then one more sweep, a few at most per deadline
        (``timers.forgives``), so a loop that never gets to read still ends the connection.
        Asked only by the sweep, of a connection about to expire: nothing per request."""
        if self.reading_paused or self.parsing_done or self.transport is None:
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
        if self.body_stream is not None and self._body_on_pace():
            return
        if self.task is None and not self.in_head and not self.queue:
            self.abort()
        elif self.body_stream is not None or self.in_head:
            self.fail(RequestTimeout(self._too_slow_detail()))
            self.deadline = self.loop.time() + self.limits.header_timeout_s

    def _too_slow_detail(self) -> str:
        if self.body_stream is not None and self.loop.time() < self.body_idle_deadline:
            rate = self.limits.min_body_rate_bytes_per_s
            return f"the request body arrives slower than {rate} bytes a second"
        return "the client was too slow sending the request"

    def more_requests(self) -> bool:
        """Whether a request already received (or arriving) waits behind the current one."""
        return bool(self.queue) or self.in_head

    def close_when_idle(self) -> None:
        if self.task is not None or self.more_requests() or self.transport is None:
            return
        if not self.served:
            # Accepted just before the drain began, its first request may still be on its way:
            # the client gets a short while to send it (answered with Connection: close), not a
            # close before it could ask anything. The sweep ends the wait.
            self.deadline = min(self.deadline, self.loop.time() + FIRST_REQUEST_GRACE_S)
            return
        self.closing = True
        self.transport.close()

    def cut(self) -> None:
        """Drop the connection now, whatever is in flight (the grace period is over)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
