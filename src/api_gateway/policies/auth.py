"""Authentication: a verified bearer token, unless the path is public for its route."""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import Unauthorized
from api_gateway.routing import PublicPaths
from api_gateway.tokens import TOKEN_SHAPE, TokenVerifier, bearer_token
from api_gateway.types import Handler, Request, Response


class Authenticate:
    def __init__(self, verifier: TokenVerifier, public: PublicPaths, prefix: str) -> None:
        self.verifier = verifier
        self.public = public
        self.prefix_length = len(prefix)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        # Tokens on public paths are ignored: a public request carries no identity upstream.
        # The exact public paths are tested here, sparing most requests a call into `public`.
        public = self.public
        relative = request.path[self.prefix_length :]
        if (
            not public.everything
            and (relative.rstrip("/") or "/") not in public.exact
            and not (public.subtrees and relative in public)
        ):
            request.claims = self.verifier.authenticate(authorization(request))
        return call_next(request)


def authorization(request: Request) -> bytes:
    """The request's one Authorization value."""
    header = None
    for name, value in request.headers:
        if name == b"authorization":
            if header is not None:
                # Which one would the upstream believe? Refuse rather than guess.
                raise Unauthorized("more than one Authorization header", error="invalid_request")
            header = value
    if header is None:
        raise Unauthorized("an access token is required", error="")
    return header


def bearer(header: bytes) -> str:
    """The well-formed token of a ``Bearer <token>`` Authorization value, or 401."""
    token = bearer_token(header)
    if not TOKEN_SHAPE.fullmatch(token):
        raise Unauthorized("the access token is not three base64url segments")
    return token.decode("ascii")
