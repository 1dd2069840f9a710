"""HTTP/1.1 framing rules shared by the server and the client: what is hop-by-hop, how heads are
written, and which message framings are refused."""

from __future__ import annotations

from http import HTTPStatus

from api_gateway.errors import MalformedRequest
from api_gateway.types import Headers

# RFC 9110 §7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection).
HOP_BY_HOP = frozenset(
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

STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Header names listed in every ``Connection`` header, lower-cased."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"")
    return frozenset(tokens)


def without_hop_by_hop(headers: Headers, extra: frozenset[bytes] = frozenset()) -> Headers:
    """Drop hop-by-hop headers and everything ``Connection`` names, before anything is added."""
    kept: Headers = []
    named = False
    for header in headers:
        name = header[0]
        if name in HOP_BY_HOP or name in extra:
            named = named or name == b"connection"
            continue
        kept.append(header)
    if named:
        tokens = connection_tokens(headers)
        kept = [header for header in kept if header[0] not in tokens]
    return kept


def check_request_framing(headers: Headers, http_version: str) -> None:
    """Refuse what llhttp lets through but a proxy must not: ambiguous or foreign framing."""
    if http_version not in ("1.1", "1.0"):
        raise MalformedRequest(f"HTTP/{http_version} is not supported")
    hosts = encodings = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            encodings += 1
            if http_version == "1.0":
                raise MalformedRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request")
            if value.strip().lower() != b"chunked":
                raise MalformedRequest("only 'Transfer-Encoding: chunked' is accepted")
        elif name == b"host":
            hosts += 1
    if encodings > 1:
        raise MalformedRequest("more than one Transfer-Encoding header")
    if hosts > 1:
        raise MalformedRequest("more than one Host header")
    if hosts == 0 and http_version == "1.1":
        raise MalformedRequest("an HTTP/1.1 request needs a Host header")
