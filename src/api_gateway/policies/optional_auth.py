"""Optional authentication: a token is verified when one is sent; without one, no identity.

For aggregates declared ``auth: optional``. A token that is sent must be valid (401 otherwise):
a client that means to be someone and is not must hear so, not get the anonymous answer.
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import UnknownKey
from api_gateway.policies.auth import authorization, verify_refreshing
from api_gateway.tokens import TokenVerifier
from api_gateway.types import Handler, Request, Response


class OptionalAuthenticate:
    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        header = authorization(request)
        if header is not None:
            try:
                request.claims = self.verifier.authenticate(header)
            except UnknownKey as unknown:
                return self.refreshed(request, call_next, header, unknown)
        return call_next(request)

    async def refreshed(
        self, request: Request, call_next: Handler, header: bytes, unknown: UnknownKey
    ) -> Response:
        request.claims = await verify_refreshing(self.verifier, header, unknown)
        return await call_next(request)
