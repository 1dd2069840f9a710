"""Cross-site request forgery: when a credential the browser sends by itself may be used.

A cookie rides along with every request a browser makes to the gateway's host, including a
form another site posts and a WebSocket another site's page opens. So a token from the cookie
is used for a request that changes something (any method but GET, HEAD and OPTIONS) or opens a
WebSocket only when the browser's ``Origin`` is the gateway's own (the ``Host`` it asked) or one
of ``cors_origins`` listed by name or pattern (``*`` lists no one: it lets anyone read public
answers, not act as a user). Without ``Origin`` the request is not a cross-site browser request
(browsers send it on every cross-origin POST and every WebSocket handshake): curl, a service or
a same-site navigation. ``Origin: null`` (a sandboxed frame, a cross-site redirect) is refused.
A bearer token, an API key or a query token is never sent by the browser on its own, so none of
them is checked.
"""

from __future__ import annotations

from typing import Final

from api_gateway.origins import AllowedOrigins
from api_gateway.types import Request
from api_gateway.websocket import WEBSOCKET

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SCHEME_END: Final = b"://"


class CookieOrigins:
    __slots__ = ("allowed",)

    def __init__(self, allowed: AllowedOrigins | None) -> None:
        self.allowed = allowed

    def allows(self, request: Request) -> bool:
        if request.method in SAFE_METHODS and request.upgrade != WEBSOCKET:
            return True
        origin = request.header_list(b"origin")
        if origin is None:
            return True
        allowed = self.allowed
        if allowed is not None and allowed.listed(origin):
            return True
        scheme_end = origin.find(SCHEME_END)
        if scheme_end <= 0:
            return False  # "null", or not an origin
        host = request.header_list(b"host")
        return host is not None and origin[scheme_end + 3 :] == host.lower()
