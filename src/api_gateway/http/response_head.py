"""The head of an upstream response, field by field as llhttp reports it: the fields passed on
to the client, the ones that frame the body (kept apart, never passed on), and the fields the
``Connection`` header names (hop-by-hop: dropped once the head is complete); and the caps on
every field of an exchange (interim heads and trailers included)."""

from __future__ import annotations

from api_gateway.errors import THE_SERVICE, UnusableResponse
from api_gateway.http.framing import ResponseFieldFilter, lower_name
from api_gateway.types import Headers


class ResponseHead:
    """One per connection, begun for each exchange and cleared for each head (an interim
    head's fields are forgotten, though they count against the caps)."""

    __slots__ = (
        "authority",
        "byte_cap",
        "chunked",
        "field_bytes",
        "field_count",
        "fields",
        "headers",
        "length",
        "line_cap",
        "tokens",
    )

    def __init__(
        self, fields: ResponseFieldFilter, byte_cap: int, line_cap: int, authority: str = ""
    ) -> None:
        self.fields, self.byte_cap, self.line_cap = fields, byte_cap, line_cap
        # The instance's ``host:port`` as sent in Host, lower-cased: what a Location may name.
        self.authority = authority.lower().encode("ascii")
        self.begin()

    def begin(self) -> None:
        """A new exchange. (``clear``'s lines are repeated, not called: one call less each.)"""
        self.field_bytes = 0
        self.field_count = 0
        self.headers: Headers = []
        self.length: bytes | None = None
        self.chunked = False
        # Fields a Connection header names; None while there are none (nearly always).
        self.tokens: set[bytes] | None = None

    def clear(self) -> None:
        """A new head after an interim one."""
        self.headers = []
        self.length = None
        self.chunked = False
        self.tokens = None

    def add(self, name: bytes, value: bytes, in_head: bool) -> bool:
        """A field of the exchange, the head's (``in_head``) or a trailer (counted, never
        merged into the head: RFC 9110 §6.5.1); False once it passes a cap."""
        self.field_count += 1
        self.field_bytes += len(name) + len(value) + 4  # as on the wire: ": " and CRLF
        if self.field_count > self.line_cap or self.field_bytes > self.byte_cap:
            return False
        if not in_head:
            return True
        name = lower_name(name)
        passed = self.fields.passed.young.get(name)  # the memo's hit, in place
        if passed is None:
            passed = self.fields.decide(name)
        if passed:
            self.headers.append((name, value))
        elif name == b"content-length":
            self.length = value
        elif name == b"transfer-encoding":
            self.chunked = True
        elif name == b"connection":
            # Nearly every upstream sends a plain keep-alive or close: nothing to split.
            if value.lower() not in (b"keep-alive", b"close"):
                tokens = {t.strip().lower() for t in value.split(b",")}
                tokens -= {b"", b"close", b"keep-alive"}
                if self.tokens is None:
                    self.tokens = tokens
                else:
                    self.tokens |= tokens
        elif name in self.fields.relocated:
            self.headers.append((name, self.relocate(value)))
        return True

    def relocate(self, value: bytes) -> bytes:
        """A URL naming the instance (``http://10.1.0.5:3004/x``), as the path it points at
        (``/x``): the client reaches it through the gateway, never at the instance's address.
        Any other value is left as it is."""
        authority = self.authority
        lowered = value.lower()
        for scheme in (b"http://", b"https://", b"//"):
            if lowered.startswith(scheme):
                end = len(scheme) + len(authority)
                if authority and lowered[len(scheme) : end] == authority:
                    rest = value[end:]
                    if not rest:
                        return b"/"
                    if rest[:1] in (b"/", b"?", b"#"):
                        return rest if rest[:1] == b"/" else b"/" + rest
                return value
        return value

    def too_large(self) -> UnusableResponse:
        caps = f"{self.byte_cap} bytes or {self.line_cap} lines"
        return UnusableResponse(f"{THE_SERVICE}'s response fields exceed {caps}")

    def complete(self) -> None:
        """The head is complete: drop the fields its Connection header named."""
        tokens = self.tokens
        if tokens:
            self.headers = [h for h in self.headers if h[0] not in tokens]

    def event_stream(self) -> bool:
        """Whether the response is a Server-Sent Events stream (asked only of streamed ones)."""
        for name, value in self.headers:
            if name == b"content-type":
                return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
        return False
