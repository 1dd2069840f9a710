"""CORS for the configured origins (``CORS_ORIGINS``); absent from the chain when none are set.

Preflights are answered by the gateway itself and never reach an upstream. Credentials are
allowed for listed origins; ``*`` allows any origin without credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import Forbidden
from api_gateway.types import Handler, Headers, Request, Response

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSED = (
    b"x-request-id, x-response-time, x-ratelimit-limit, x-ratelimit-remaining, "
    b"x-ratelimit-reset, retry-after"
)
MAX_AGE = b"600"
VARY = (b"vary", b"Origin")


class Cors:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/").encode() for o in origins if o != "*")

    def _allow(self, origin: bytes) -> Headers | None:
        if origin in self.origins:
            return [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                VARY,
            ]
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return None

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        origin = request.header(b"origin")
        if origin is None:
            return call_next(request)
        allowed = self._allow(origin)
        if request.method == "OPTIONS" and request.header(b"access-control-request-method"):
            if allowed is None:
                raise Forbidden("this origin is not allowed to call the API")
            requested = request.header(b"access-control-request-headers")
            allowed += [
                (b"access-control-allow-methods", ALLOWED_METHODS),
                (b"access-control-max-age", MAX_AGE),
            ]
            if requested:
                allowed.append((b"access-control-allow-headers", requested))
            return _ready(Response(204, allowed))
        if allowed is not None:
            request.response_headers += allowed
            request.response_headers.append((b"access-control-expose-headers", EXPOSED))
        return call_next(request)


async def _ready(response: Response) -> Response:
    return response
