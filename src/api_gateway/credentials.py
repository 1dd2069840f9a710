"""Credentials a browser can send where it cannot set ``Authorization``: a cookie, and, for an
``EventSource`` stream or a WebSocket handshake, an ``access_token`` query parameter.

Whatever carried a credential the gateway used is taken off the request before it goes on, so
the token reaches neither the service's access log (a query string) nor the service at all in a
second place it might trust. The query parameter is removed from every request that has it,
used or not: a URL is logged by every hop, and a token in one must go no further.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_to_bytes

from api_gateway.errors import Unauthorized
from api_gateway.types import Request
from api_gateway.websocket import WEBSOCKET

QUERY_NAME: Final = b"access_token"
EVENT_STREAM: Final = b"text/event-stream"


def take_query_token(request: Request) -> bytes | None:
    """The ``access_token`` parameter's value, removed from the query (every copy of it)."""
    found: bytes | None = None
    kept = []
    for part in request.query.split(b"&"):
        name, _, value = part.partition(b"=")
        if unquote_to_bytes(name) != QUERY_NAME:
            kept.append(part)
            continue
        value = unquote_to_bytes(value.replace(b"+", b" "))
        if found is not None and value != found:
            raise Unauthorized("more than one access_token parameter", error="invalid_request")
        found = value
    request.query = b"&".join(kept)
    return found


def may_carry_query_token(request: Request) -> bool:
    """An ``EventSource`` GET or a WebSocket handshake: the two a browser cannot give headers."""
    if request.method != "GET":
        return False
    accept = request.header_list(b"accept")
    if accept is not None and EVENT_STREAM in accept.lower():
        return True
    return request.upgrade == WEBSOCKET


def take_cookie(request: Request, name: bytes) -> bytes | None:
    """The value of cookie ``name``, removed from the Cookie header(s) the service will see.

    Cookies are ``name=value`` pairs joined by ``;`` (RFC 6265 §5.4); a name sent twice with
    different values is refused, since which one the browser meant cannot be known.
    """
    found: bytes | None = None
    headers = []
    for header in request.headers:
        if header[0] != b"cookie" or name not in header[1]:
            headers.append(header)
            continue
        kept = []
        for pair in header[1].split(b";"):
            key, _, value = pair.strip().partition(b"=")
            if key != name:
                kept.append(pair.strip())
                continue
            value = value.strip().strip(b'"')
            if found is not None and value != found:
                raise Unauthorized(
                    f"more than one {name.decode('ascii')} cookie", error="invalid_request"
                )
            found = value
        if kept:
            headers.append((b"cookie", b"; ".join(kept)))
    if found is not None:
        request.headers = headers
    return found
