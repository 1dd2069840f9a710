"""HTTP/1.1 framing rules shared by the server and the client: what is hop-by-hop, how heads are
written, and which message framings are refused."""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from api_gateway.errors import BadRequest, MalformedRequest
from api_gateway.memo import Memo
from api_gateway.types import Headers
from api_gateway.websocket import NOT_AN_UPGRADE, OTHER_PROTOCOL, WEBSOCKET

# RFC 9110 §7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection).
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

STATUS_LINES: Final = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


# Header names as received -> lower-cased, for the few distinct names clients and services send:
# a lookup instead of a method call per field, and every lowered name is one shared object
# whose hash is computed once for every later set and dict lookup. Bounded, the names in use
# kept (``memo.py``).
LOWERED_CACHE_SIZE: Final = 4096
_LOWERED: Final[Memo[bytes, bytes]] = Memo(LOWERED_CACHE_SIZE)
# Memos of what a peer sends are bounded in bytes too: a longer name is lowered each time, never
# remembered, or 4096 distinct 16 KiB names would keep 128 MiB (raw and lowered) per worker. No
# registered field name comes near it.
MAX_MEMO_NAME: Final = 64


def lower_name(name: bytes) -> bytes:
    lowered = _LOWERED.young.get(name)  # the memo's hit, in place: once per field
    return lowered if lowered is not None else _lower_new(name)


def _lower_new(name: bytes) -> bytes:
    lowered = _LOWERED.get(name)  # from the old generation, if it is there
    if lowered is not None:
        return lowered
    lowered = name.lower()
    if len(name) > MAX_MEMO_NAME:
        return lowered
    lowered = _LOWERED.setdefault(lowered, lowered)  # the canonical object for this name
    _LOWERED.put(name, lowered)
    return lowered


def single_value(headers: Headers, name: bytes) -> bytes | None:
    """The value of a field that may appear once (None: absent); 400 when it appears twice.

    Which line counts would otherwise be a guess, and the service may guess the other way: a
    check passed on the first line while the service reads the last is no check at all."""
    found = None
    for key, value in headers:
        if key == name:
            if found is not None:
                raise BadRequest(f"more than one {name.decode('latin-1')} header")
            found = value
    return found


def expects_continue(value: bytes) -> bool:
    lowered = value.lower()
    return lowered == b"100-continue" or b"100-continue" in [e.strip() for e in lowered.split(b",")]


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


# Connection values that name no other field (llhttp applies them itself): by far the most common,
# and nothing to split.
PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close"})

# Fields the data plane consumes itself: they describe this hop, not the message.
REQUEST_FRAMING: Final = HOP_BY_HOP | {b"content-length", b"expect", b"host"}
RESPONSE_FRAMING: Final = HOP_BY_HOP | {b"content-length"}


class RequestFraming:
    """The framing facts of one request head, collected as its fields arrive.

    ``take`` is called only for names in ``REQUEST_FRAMING`` and says whether the field is
    end-to-end (kept in the header list); ``check`` then refuses what llhttp lets through but a
    proxy must not: ambiguous or foreign framing.
    """

    __slots__ = (
        "connection_tokens",
        "content_length",
        "encodings",
        "expect_continue",
        "hosts",
        "upgrade",
    )

    def __init__(self) -> None:
        self.content_length: int | None = None
        self.encodings: list[bytes] = []
        self.hosts = 0
        self.expect_continue = False
        self.connection_tokens: set[bytes] = set()
        self.upgrade: bytes | None = None  # the protocols an Upgrade field asks for

    def take(self, name: bytes, value: bytes) -> bool:
        if name == b"host":
            self.hosts += 1
            return True
        if name == b"content-length":
            self.content_length = int(value)  # llhttp has validated it
        elif name == b"transfer-encoding":
            self.encodings.append(value)
        elif name == b"expect":
            # A list (RFC 9110 §10.1.1): a 100-continue on any line counts, in any order.
            self.expect_continue = self.expect_continue or expects_continue(value)
        elif name == b"upgrade":
            self.upgrade = value if self.upgrade is None else self.upgrade + b", " + value
        elif name == b"connection" and value.lower() not in PLAIN_CONNECTION:
            self.connection_tokens.update(t.strip().lower() for t in value.split(b","))
        return False

    def check(self, http_version: str) -> None:
        if http_version not in ("1.1", "1.0"):
            raise MalformedRequest(f"HTTP/{http_version} is not supported")
        if self.encodings:
            if http_version == "1.0":
                raise MalformedRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request")
            if len(self.encodings) > 1:
                raise MalformedRequest("more than one Transfer-Encoding header")
            if self.encodings[0].strip().lower() != b"chunked":
                raise MalformedRequest("only 'Transfer-Encoding: chunked' is accepted")
        if self.hosts > 1:
            raise MalformedRequest("more than one Host header")
        if self.hosts == 0 and http_version == "1.1":
            raise MalformedRequest("an HTTP/1.1 request needs a Host header")

    def upgrade_kind(self) -> int:
        """What the request asks to switch to (``websocket.py`` kinds): an Upgrade field counts
        only with ``Connection: upgrade`` (RFC 9110 §7.8)."""
        if self.upgrade is None or b"upgrade" not in self.connection_tokens:
            return NOT_AN_UPGRADE
        protocols = [p.strip().lower() for p in self.upgrade.split(b",")]
        return WEBSOCKET if b"websocket" in protocols else OTHER_PROTOCOL

    @property
    def chunked(self) -> bool:
        return bool(self.encodings)

    def end_to_end(self, headers: Headers) -> Headers:
        """Drop the fields ``Connection`` named (the rest of hop-by-hop is never kept)."""
        tokens = self.connection_tokens - {b"", b"close", b"keep-alive"}
        return [h for h in headers if h[0] not in tokens] if tokens else headers


# Methods whose requests carry a body by their nature (the others may, but rarely do).
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


# Fields of an upstream response never passed on whatever the configuration: framing is the data
# plane's own business, X-Powered-By only tells attackers what to try, and X-Correlation-ID is
# the gateway's own (the request id, on every response).
RESPONSE_NEVER_PASSED: Final = RESPONSE_FRAMING | {b"x-powered-by", b"x-correlation-id"}
# Fields that may point at the instance itself: a service builds an absolute URL from the Host
# it received, which is the instance's address. Passed on after ``ResponseHead.relocate``.
RELOCATED: Final = frozenset({b"location", b"content-location"})
FIELD_DECISIONS_SIZE: Final = 4096


class ResponseFieldFilter:
    """Which fields of an upstream response reach the client: not the framing ones, nor the
    configured names (exact, or prefixes). Decided once per distinct field name and remembered,
    so the check per response field is one dict lookup (``passed.young.get(name)``)."""

    __slots__ = ("names", "passed", "prefixes", "relocated")

    def __init__(self, names: frozenset[bytes], prefixes: tuple[bytes, ...]) -> None:
        # Not "passed" as they are: the head passes them on relocated, unless configured away.
        self.relocated = frozenset(n for n in RELOCATED - names if not n.startswith(prefixes))
        self.names = RESPONSE_NEVER_PASSED | RELOCATED | names
        self.prefixes = prefixes
        # Lower-cased name -> passed on. Bounded like ``_LOWERED``, and a name longer than
        # ``MAX_MEMO_NAME`` is decided each time.
        self.passed: Memo[bytes, bool] = Memo(FIELD_DECISIONS_SIZE)

    def decide(self, name: bytes) -> bool:
        """Whether the field ``name`` (lower-cased) is passed on; remembered for next time."""
        found = self.passed.get(name)  # from the old generation, if it is there
        if found is not None:
            return found
        passed = name not in self.names and not name.startswith(self.prefixes)
        if len(name) <= MAX_MEMO_NAME:
            self.passed.put(name, passed)
        return passed
