"""Authentication: who the client is, unless the path is public for its route.

The credentials, in the order they win: ``Authorization`` (``Bearer <token>``, or ``ApiKey
<key>`` where the route accepts keys), ``X-API-Key`` (likewise), the token cookie
(``jwt.cookie``), and the ``access_token`` query parameter of an ``EventSource`` GET or a
WebSocket handshake (``credentials.py``). A bearer token verified before is one dictionary
lookup on the fast path below; every other credential takes the slow path, a coroutine.

With ``REDIS_URL``, a verified token is also checked against auth-service's revoked tokens
(``revocation.py``), after its signature: on the fast path too, once its last answer is older
than ``jwt.revocation_check_ms``. API keys have revocation of their own (``apikeys``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final, Protocol

from api_gateway.compact import well_formed
from api_gateway.credentials import may_carry_query_token, take_cookie, take_query_token
from api_gateway.cross_site import CookieOrigins
from api_gateway.errors import CrossSiteRequest, Unauthorized, UnknownKey
from api_gateway.revocation import Revocations
from api_gateway.routing import PublicPaths
from api_gateway.tokens import CANONICAL, TokenVerifier, bearer_token
from api_gateway.types import Claims, Handler, Request, Response

API_KEY_SCHEME: Final = b"apikey "
API_KEY_HEADER: Final = b"x-api-key"
QUERY_TOKEN: Final = b"access_token"


class KeyChecker(Protocol):
    """API keys (``apikeys``): the claims of a key, for a route, or a 401."""

    def check(self, key: bytes, route: str) -> Awaitable[Claims]: ...


class Authenticate:
    def __init__(
        self,
        verifier: TokenVerifier,
        public: PublicPaths,
        prefix: str,
        cookie: str = "",
        api_keys: KeyChecker | None = None,
        route: str = "",
        revocations: Revocations | None = None,
        fail_closed: bool = False,
        cookie_origins: CookieOrigins | None = None,
    ) -> None:
        self.verifier = verifier
        # auth-service's revoked tokens (None: not checked), and what Redis down means here.
        self.revocations, self.fail_closed = revocations, fail_closed
        self.public = public
        self.prefix_length = len(prefix)
        self.cookie = cookie.encode("ascii")
        self.api_keys = api_keys
        # The route an API key must be allowed on (its canonical prefix, for aliases too).
        self.route = route
        # Where a cookie's token may be used from (cross_site.py): no configuration, same-site.
        self.cookie_origins = cookie_origins or CookieOrigins(None)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        query = request.query
        if query and QUERY_TOKEN in query:
            return self.slow(request, call_next)
        if self.is_public(request):
            if self.api_keys is not None and sends_api_key(request):
                return self.slow(request, call_next)
            return call_next(request)  # a public request carries no identity upstream
        header = None
        for name, value in request.headers:
            if name == b"authorization":
                if header is not None:
                    # Which one would the upstream believe? Refuse rather than guess.
                    raise Unauthorized(
                        "more than one Authorization header", error="invalid_request"
                    )
                header = value
        if header is None:
            return self.slow(request, call_next)
        verifier = self.verifier
        claims = verifier.cache.get(header)
        now = verifier.clock()
        if claims is None or claims.expires_at + verifier.leeway < now:
            return self.miss(request, call_next, header)
        request.claims = claims
        if claims.checked_until < now and self.revocations is not None:
            return self.rechecked(request, call_next, header)
        return call_next(request)

    def miss(self, request: Request, call_next: Handler, header: bytes) -> Awaitable[Response]:
        """A credential not in the verified-token cache: an API key, or a token to verify."""
        if header[:7].lower() == API_KEY_SCHEME:
            return self.slow(request, call_next)
        try:
            request.claims = self.verifier.authenticate(header)
        except UnknownKey as unknown:
            return self.refreshed(request, call_next, header, unknown)
        if self.revocations is not None:
            return self.rechecked(request, call_next, header)
        return call_next(request)

    async def rechecked(self, request: Request, call_next: Handler, header: bytes) -> Response:
        """The verified token of ``header`` (in ``request.claims``), once auth-service's revoked
        tokens say it is not one of them."""
        assert request.claims is not None and self.revocations is not None
        token = bearer_token(header).decode("ascii")  # verified: base64url, so ASCII
        await self.revocations.check(request.claims, token, self.fail_closed)
        return await call_next(request)

    def is_public(self, request: Request) -> bool:
        # The exact public paths are tested here, sparing most requests a call into `public`.
        public = self.public
        relative = request.path[self.prefix_length :]
        return (
            public.everything
            or (relative.rstrip("/") or "/") in public.exact
            or bool(public.subtrees and relative in public)
        )

    async def refreshed(
        self, request: Request, call_next: Handler, credentials: bytes, unknown: UnknownKey
    ) -> Response:
        request.claims = claims = await verify_refreshing(self.verifier, credentials, unknown)
        if self.revocations is not None:
            token = bearer_token(credentials).decode("ascii")
            await self.revocations.check(claims, token, self.fail_closed)
        return await call_next(request)

    async def slow(self, request: Request, call_next: Handler) -> Response:
        query_token = take_query_token(request) if QUERY_TOKEN in request.query else None
        if self.is_public(request):
            key = self.api_key(request)
            if key is not None and self.api_keys is not None:
                request.claims = await self.api_keys.check(key, self.route)
            return await call_next(request)
        request.claims = await self.claims(request, query_token)
        return await call_next(request)

    async def claims(self, request: Request, query_token: bytes | None) -> Claims:
        header = authorization(request)
        if header is not None and header[:7].lower() != API_KEY_SCHEME:
            return await self.unrevoked(header)
        key = self.api_key(request)
        if key is not None:
            if self.api_keys is None:
                raise Unauthorized("this route does not accept API keys")
            return await self.api_keys.check(key, self.route)
        if self.cookie:
            token = take_cookie(request, self.cookie)
            if token:
                if not self.cookie_origins.allows(request):
                    raise CrossSiteRequest(
                        "a token from a cookie cannot be used from another site's page"
                    )
                return await self.unrevoked(CANONICAL + token)
        if query_token and may_carry_query_token(request):
            return await self.unrevoked(CANONICAL + query_token)
        raise Unauthorized("an access token is required", error="")

    async def unrevoked(self, credentials: bytes) -> Claims:
        """The claims of a bearer credential that auth-service has not revoked."""
        claims = await verify(self.verifier, credentials)
        if self.revocations is not None:
            token = bearer_token(credentials).decode("ascii")
            await self.revocations.check(claims, token, self.fail_closed)
        return claims

    def api_key(self, request: Request) -> bytes | None:
        """The API key the request sends, taken off the headers the service will see."""
        found = None
        kept = []
        for header in request.headers:
            name, value = header
            if name == API_KEY_HEADER:
                key = value.strip()
            elif name == b"authorization" and value[:7].lower() == API_KEY_SCHEME:
                key = value[7:].strip()
            else:
                kept.append(header)
                continue
            if found is not None:
                raise Unauthorized("more than one API key", error="invalid_request")
            found = key
        if found is not None:
            request.headers = kept
            if not found:
                raise Unauthorized("the API key is empty", error="invalid_request")
        return found


def sends_api_key(request: Request) -> bool:
    """Whether the request carries an API key: a public request without one (nearly all of
    them) stays on the fast path."""
    for name, value in request.headers:
        if name == API_KEY_HEADER or (
            name == b"authorization" and value[:7].lower() == API_KEY_SCHEME
        ):
            return True
    return False


async def verify(verifier: TokenVerifier, credentials: bytes) -> Claims:
    """The claims of a bearer credential, refreshing the key set once if it names a new key."""
    try:
        return verifier.authenticate(credentials)
    except UnknownKey as unknown:
        return await verify_refreshing(verifier, credentials, unknown)


async def verify_refreshing(
    verifier: TokenVerifier, credentials: bytes, unknown: UnknownKey
) -> Claims:
    """A token names a key not loaded: the set is fetched again (at most so often, one fetch
    for all the requests that wait), then the token is checked once more."""
    refresh = verifier.source.refresh_unknown(unknown.kid)
    if refresh is None:
        raise unknown
    await refresh
    return verifier.authenticate(credentials)


def authorization(request: Request) -> bytes | None:
    """The request's one Authorization value, or None."""
    header = None
    for name, value in request.headers:
        if name == b"authorization":
            if header is not None:
                raise Unauthorized("more than one Authorization header", error="invalid_request")
            header = value
    return header


def bearer(header: bytes) -> str:
    """The well-formed token of a ``Bearer <token>`` Authorization value, or 401."""
    token = bearer_token(header)
    if not well_formed(token):
        raise Unauthorized("the access token is not three base64url segments")
    return token.decode("ascii")
