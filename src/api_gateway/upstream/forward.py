"""Rendering the upstream request head.

The headers it renders are already final: the data plane dropped the hop-by-hop fields and
``HeaderTrust`` decided the rest (the client's, filtered, and the gateway's own, already in wire
form in ``Request.upstream_block``); only the instance's ``Host``, the remaining deadline, the
body framing, the service-call signature (``signing.py``) and, for a new trace that tracing does
not sample, its ``traceparent`` (``Request.trace``) are added here, per attempt.
"""

from __future__ import annotations

from api_gateway.http.framing import BODY_METHODS
from api_gateway.http.wire import add_header_lines
from api_gateway.observability.spans import UNSAMPLED_END, UNSAMPLED_START
from api_gateway.signing import Signer, is_json
from api_gateway.types import Request


def render_head(
    request: Request, host_line: bytes, deadline_ms: int, signer: Signer | None = None
) -> tuple[bytes, bool]:
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
    # One join over every piece (COMPILED.md §7).
    parts = [
        request.method.encode("ascii"),
        b" ",
        target,
        b" HTTP/1.1\r\n",
        host_line,
        b"\r\n",
    ]
    add_header_lines(parts, request.headers)
    trace = request.trace
    if isinstance(trace, bytes):  # a new trace not sampled: its ids (Sampler.ids)
        parts.append(UNSAMPLED_START)
        parts.append(trace)
        parts.append(UNSAMPLED_END)
    add_header_lines(parts, request.upstream_headers)
    parts.append(request.upstream_block)
    parts.append(b"x-request-deadline-ms: %d\r\n" % deadline_ms)
    if signer is not None:
        # Over the target as sent and the body's bytes; a stream's are not known yet (None).
        signed = body if isinstance(body, bytes) else None
        json = bool(signed) and is_json(request.headers)
        add_header_lines(parts, signer.headers(request.method, target, signed, json))
    if framing:
        parts += (framing, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked
