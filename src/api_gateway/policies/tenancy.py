"""Venue isolation: a request that names a venue passes only for a token of the venue's tenant.

An unknown venue is refused like another tenant's: the gateway cannot show that it is the
token's tenant's, and the same 403 for both means the answer does not tell tenant A which of
tenant B's venue ids exist. An id longer than any venue's (128 bytes) is unknown without asking.

The decision is made on a path and a query, whoever built them: the policy applies it to a
client's request, and aggregates to every source path they build from data (a client's id, or a
field of another service's answer), so a path the gateway writes itself is held to the same
rule as one a client sends.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.directory import VenueDirectory
from api_gateway.errors import BadRequest, Forbidden
from api_gateway.types import Claims, Handler, Request, Response
from api_gateway.venue_refs import VenueRefs

# Each named venue may cost a lookup: a request naming dozens is refused, not fanned out.
MAX_VENUES_PER_REQUEST: Final = 16
# Ids that would change the structure of the lookup's path (/api/v1/venues/{id}): no venue has
# one, and a venue service that resolves dot segments would answer for another resource.
STRUCTURAL_IDS: Final = frozenset({".", ".."})
# Venue ids are UUIDs, and the directory accepts none longer than 128 characters of
# ``[A-Za-z0-9_.:@-]``: a longer id names no venue. Refused without a lookup, since each costs a
# venue-service call and a cached "no such venue" keyed by the id (5,000 distinct 7 KiB ids grew
# a worker by 34 MiB).
MAX_VENUE_ID_BYTES: Final = 128


class VenueIsolation:
    def __init__(
        self, directory: VenueDirectory, refs: VenueRefs, admin_roles: frozenset[str]
    ) -> None:
        self.owners = directory.owners
        self.refs, self.admin_roles = refs, admin_roles

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        claims = request.claims
        pending = self.unresolved(request.path, request.query, claims)
        if pending and claims is not None:
            return self.check_then(request, pending, claims.tenant_id, call_next)
        return call_next(request)

    def unresolved(self, path: str, query: bytes, claims: Claims | None) -> list[str]:
        """Decide what the cache can: raise for a venue that is not the tenant's; return the
        venues still to be looked up (none: the request passes)."""
        # No claims: a public path, whose data is public. Admin roles act across tenants.
        if claims is None or claims.role in self.admin_roles:
            return []
        venues = self.refs.named(path, query, MAX_VENUES_PER_REQUEST)
        if not venues:
            return venues
        if len(venues) > MAX_VENUES_PER_REQUEST:
            raise BadRequest(f"a request may name at most {MAX_VENUES_PER_REQUEST} venues")
        pending = []
        for venue in venues:
            if venue in STRUCTURAL_IDS or not_an_id(venue):
                check(venue, None, claims.tenant_id)
            hit = self.owners.cached(venue)
            if hit is None:
                pending.append(venue)
            else:
                check(venue, hit.value, claims.tenant_id)
        return pending

    async def verify(self, path: str, query: bytes, claims: Claims | None) -> None:
        """The whole decision for ``path`` and ``query``: returns when they may be sent."""
        pending = self.unresolved(path, query, claims)
        if pending and claims is not None:
            await self.look_up(pending, claims.tenant_id)

    async def check_then(
        self, request: Request, venues: list[str], tenant_id: str, call_next: Handler
    ) -> Response:
        await self.look_up(venues, tenant_id)
        return await call_next(request)

    async def look_up(self, venues: list[str], tenant_id: str) -> None:
        for venue in venues:
            check(venue, await self.owners.get(venue), tenant_id)


def not_an_id(venue: str) -> bool:
    if len(venue) > MAX_VENUE_ID_BYTES:
        return True
    return not venue.isascii() and len(venue.encode()) > MAX_VENUE_ID_BYTES


def check(venue: str, owner: str | None, tenant_id: str) -> None:
    if owner != tenant_id:
        raise Forbidden(f"venue {venue[:128]!r} is not available to this tenant")
