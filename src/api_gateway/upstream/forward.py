"""Rendering the upstream request head.

The header list it renders is already final: the data plane dropped the hop-by-hop fields and
``HeaderTrust`` decided the rest (the client's, filtered, and the gateway's own); only the
instance's ``Host``, the remaining deadline and the body framing are added here, per attempt.
"""

from __future__ import annotations

from api_gateway.http.framing import BODY_METHODS
from api_gateway.types import Request


def render_head(request: Request, host_line: bytes, deadline_ms: int) -> tuple[bytes, bool]:
    """The request head for one attempt, and whether its body goes out chunked."""
    target = request.path.encode("ascii")
    if request.query:
        target += b"?" + request.query
    body = request.body
    chunked = False
    if isinstance(body, bytes):
        framing = (
            b"content-length: %d" % len(body) if body or request.method in BODY_METHODS else b""
        )
    elif request.content_length is not None:
        framing = b"content-length: %d" % request.content_length
    else:
        chunked = True
        framing = b"transfer-encoding: chunked"
    lines = [
        b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target),
        host_line,
        *map(b": ".join, request.headers),
        *map(b": ".join, request.upstream_headers),
        b"x-request-deadline-ms: %d" % deadline_ms,
    ]
    if framing:
        lines.append(framing)
    lines.append(b"\r\n")
    return b"\r\n".join(lines), chunked
