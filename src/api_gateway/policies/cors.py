"""CORS for the configured origins (``CORS_ORIGINS``); absent from the chain when none are set.

Preflights are answered by the gateway itself, before authentication, and never reach an
upstream. Listed origins (exact, or by a ``*.domain`` pattern: ``origins.py``) are echoed, with
credentials unless ``cors_credentials`` is false; ``*`` allows any origin and is refused at
start-up together with credentials. Whenever the answer depends on the origin, every response
says ``Vary: Origin``, those to requests without one too: a shared cache must not hand a
response made without CORS headers to a browser that needs them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.errors import BadRequest, Forbidden
from api_gateway.http.framing import single_value
from api_gateway.origins import AllowedOrigins
from api_gateway.types import Handler, Headers, Request, Response

ALLOWED_METHODS: Final = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# What a browser script may read: ours, and everything the original gateway exposed.
EXPOSED: Final = (
    b"x-request-id, x-correlation-id, x-api-version, x-response-time, x-cache, "
    b"ratelimit-limit, ratelimit-remaining, ratelimit-reset, "
    b"x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after, "
    b"location, deprecation, sunset"
)
VARY = (b"vary", b"Origin")
CREDENTIALS = (b"access-control-allow-credentials", b"true")
REQUEST_METHOD: Final = b"access-control-request-method"
DEFAULT_MAX_AGE_S: Final = 86400


class Cors:
    def __init__(
        self, origins: tuple[str, ...], credentials: bool = True, max_age_s: int = DEFAULT_MAX_AGE_S
    ):
        self.origins = AllowedOrigins(origins)
        self.varies = self.origins.varies
        self.credentials = credentials
        self.max_age = str(max_age_s).encode()

    def _allow(self, origin: bytes) -> Headers | None:
        if self.origins.listed(origin):
            allowed = [(b"access-control-allow-origin", origin), VARY]
            if self.credentials:
                allowed.append(CREDENTIALS)
            return allowed
        if self.origins.any_origin:
            allowed = [(b"access-control-allow-origin", b"*")]
            if self.varies:
                allowed.append(VARY)
            return allowed
        return None

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        # One origin, or the answer would be judged on one and the service would read another.
        origin = single_value(request.headers, b"origin")
        if origin is None:
            if self.varies:
                request.response_headers.append(VARY)
            return call_next(request)
        if b"," in origin:
            raise BadRequest("the origin header holds more than one origin")
        allowed = self._allow(origin)
        if request.method == "OPTIONS" and single_value(request.headers, REQUEST_METHOD):
            if allowed is None:
                if self.varies:
                    request.response_headers.append(VARY)
                raise Forbidden("this origin is not allowed to call the API")
            # A list: every line of it.
            requested = request.header_list(b"access-control-request-headers")
            allowed += [
                (b"access-control-allow-methods", ALLOWED_METHODS),
                (b"access-control-max-age", self.max_age),
            ]
            if requested:
                allowed.append((b"access-control-allow-headers", requested))
            return _ready(Response(204, allowed))
        if allowed is not None:
            request.response_headers += allowed
            request.response_headers.append((b"access-control-expose-headers", EXPOSED))
        elif self.varies:
            # The answer depends on the origin even when it is refused: caches must know.
            request.response_headers.append(VARY)
        return call_next(request)


async def _ready(response: Response) -> Response:
    return response
