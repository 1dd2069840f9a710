"""llhttp's callbacks for one client connection: request heads into ``Request``s (the bounds on
URI and head size, the framing rules, hop-by-hop fields consumed), body bytes into ``bytes`` or
the body stream still arriving, and how far into each read the parser got.

Parsed requests collect in ``fresh`` for the connection to dispatch once the read is parsed;
an error found in a callback is raised through llhttp and kept in ``callback_error``.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Final

import httptools

from api_gateway.errors import GatewayError, HeadersTooLarge, UriTooLong
from api_gateway.http.framing import (
    PLAIN_CONNECTION,
    REQUEST_FRAMING,
    RequestFraming,
    lower_name,
)
from api_gateway.types import Headers, Request

if TYPE_CHECKING:
    from api_gateway.http.server import HttpConnection, ServerBounds

# W3C trace context: the reader notes whether a head has either field (``Request.trace_fields``),
# so that tracing need not look through every request's headers for them.
TRACE_FIELDS: Final = frozenset({b"traceparent", b"tracestate"})
NOTED: Final = REQUEST_FRAMING | TRACE_FIELDS

# Method, spaces, version and CRLF of a request line: what it holds besides the URI.
REQUEST_LINE_BYTES: Final = 32

# The usual methods as shared strings: no decoding, and their hashes are computed once for every
# set and dict lookup after the parser.
METHODS: Final = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
}


class RequestReader:
    def __init__(self, connection: HttpConnection, bounds: ServerBounds, server_port: int) -> None:
        self.connection = connection
        self.parser = httptools.HttpRequestParser(self)
        self.server_port = server_port
        self.peer_ip = ""
        self.fresh: list[Request] = []
        self.callback_error: GatewayError | None = None
        # The bounds checked for every request, read from here rather than from ``bounds``.
        self.max_header_bytes = bounds.max_header_bytes
        self.max_header_count = bounds.max_header_count
        self.max_uri_bytes = bounds.max_uri_bytes
        # Per-message parse state.
        self.in_head = False
        self.url = b""
        self.headers: Headers = []
        # Created only for a head with framing fields besides Host (most requests have none).
        self.framing: RequestFraming | None = None
        self.plain_connection = False
        self.trace_fields = False
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
        # The request whose body is being read, and its bytes while it is not yet streamed.
        self.body_request: Request | None = None
        self.body_chunks: list[bytes] = []
        self.expect_continue = False
        # What followed an upgrade request's head in its read: the tunnel's, if a 101 comes.
        self.upgrade_rest = b""

    def head_too_large(self, read: int) -> bool:
        """Whether the head still arriving is past the cap, counting a line not yet finished
        (llhttp reports a field only once it is complete)."""
        if self.head_in_read:
            # Only the bytes from the head's start: not the body or the heads before it.
            self.head_bytes = read - self.head_start
        else:
            self.head_bytes += read
        # The request line is capped by the URI limit; what follows it by the header limit.
        return self.head_bytes - len(self.url) - REQUEST_LINE_BYTES > self.max_header_bytes

    def framing_too_large(self, read: int) -> bool:
        """Whether a body's bytes that are not body (a trailer line or chunk extension still
        arriving, which llhttp reports only once complete, if at all) pass the header cap."""
        if self.read_used:
            self.unreported = read - self.read_used
        else:
            self.unreported += read
        return self.unreported > self.max_header_bytes

    # llhttp callbacks

    def on_message_begin(self) -> None:
        self.connection.message_begins()
        self.in_head = True
        self.url = b""
        self.headers = []
        self.framing = None
        self.plain_connection = False
        self.trace_fields = False
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
        if name not in NOTED:
            self.headers.append((name, value))
        elif name == b"host":
            self.hosts += 1
            self.headers.append((name, value))
        elif name in TRACE_FIELDS:
            self.trace_fields = True
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
        request.trace_fields = self.trace_fields
        if framing is not None and framing.upgrade is not None:
            request.upgrade = framing.upgrade_kind()
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
        stream = self.connection.body_stream
        if stream is not None:
            stream.feed(chunk)
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
        if self.connection.arrival is not None:
            self.connection.body_arrived()
        elif self.body_request is not None:
            chunks = self.body_chunks
            self.body_request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body_request = None
        self.body_chunks = []

    def _callback_fail(self, error: GatewayError) -> None:
        self.callback_error = error
        raise error
