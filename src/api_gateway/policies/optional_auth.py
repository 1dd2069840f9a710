"""Optional authentication: a token is verified when one is sent; without one, no identity.

For aggregates declared ``auth: optional``. A token that is sent must be valid (401 otherwise):
a client that means to be someone and is not must hear so, not get the anonymous answer; so
must one whose token auth-service has revoked (with ``REDIS_URL``, as in ``Authenticate``).
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import UnknownKey
from api_gateway.policies.auth import authorization, verify_refreshing
from api_gateway.revocation import Revocations
from api_gateway.tokens import TokenVerifier, bearer_token
from api_gateway.types import Handler, Request, Response


class OptionalAuthenticate:
    def __init__(self, verifier: TokenVerifier, revocations: Revocations | None = None) -> None:
        self.verifier, self.revocations = verifier, revocations

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        header = authorization(request)
        if header is not None:
            try:
                request.claims = self.verifier.authenticate(header)
            except UnknownKey as unknown:
                return self.refreshed(request, call_next, header, unknown)
            claims = request.claims
            if self.revocations is not None and claims.checked_until < self.verifier.clock():
                return self.refreshed(request, call_next, header, None)
        return call_next(request)

    async def refreshed(
        self, request: Request, call_next: Handler, header: bytes, unknown: UnknownKey | None
    ) -> Response:
        """The claims after a key-set refresh (``unknown``), then the revocation check."""
        if unknown is not None:
            request.claims = await verify_refreshing(self.verifier, header, unknown)
        if self.revocations is not None and request.claims is not None:
            token = bearer_token(header).decode("ascii")
            await self.revocations.check(request.claims, token, False)
        return await call_next(request)
