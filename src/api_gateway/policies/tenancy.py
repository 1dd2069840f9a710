"""Venue isolation: a request that names a venue passes only for a token of the venue's tenant.

An unknown venue is refused like another tenant's: the gateway cannot show that it is the
token's tenant's, and the same 403 for both means the answer does not tell tenant A which of
tenant B's venue ids exist.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.directory import VenueDirectory
from api_gateway.errors import BadRequest, Forbidden
from api_gateway.types import Handler, Request, Response
from api_gateway.venue_refs import VenueRefs

# Each named venue may cost a lookup: a request naming dozens is refused, not fanned out.
MAX_VENUES_PER_REQUEST: Final = 16


class VenueIsolation:
    def __init__(
        self, directory: VenueDirectory, refs: VenueRefs, admin_roles: frozenset[str]
    ) -> None:
        self.owners = directory.owners
        self.refs, self.admin_roles = refs, admin_roles

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        claims = request.claims
        # No claims: a public path, whose data is public. Admin roles act across tenants.
        if claims is None or claims.role in self.admin_roles:
            return call_next(request)
        venues = self.refs.named(request.path, request.query)
        if not venues:
            return call_next(request)
        if len(venues) > MAX_VENUES_PER_REQUEST:
            raise BadRequest(f"a request may name at most {MAX_VENUES_PER_REQUEST} venues")
        pending = []
        for venue in venues:
            hit = self.owners.cached(venue)
            if hit is None:
                pending.append(venue)
            else:
                check(venue, hit.value, claims.tenant_id)
        if pending:
            return self.check_then(request, pending, claims.tenant_id, call_next)
        return call_next(request)

    async def check_then(
        self, request: Request, venues: list[str], tenant_id: str, call_next: Handler
    ) -> Response:
        for venue in venues:
            check(venue, await self.owners.get(venue), tenant_id)
        return await call_next(request)


def check(venue: str, owner: str | None, tenant_id: str) -> None:
    if owner != tenant_id:
        raise Forbidden(f"venue {venue[:128]!r} is not available to this tenant")
