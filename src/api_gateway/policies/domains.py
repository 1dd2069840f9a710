"""White-label domains: a request on a venue's custom domain is that venue's, and its tenant's.

Runs after authentication, so the tenant check has the token's claims, and so a request refused
for want of a token never costs a venue-service lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.directory import DomainVenue, VenueDirectory
from api_gateway.errors import Forbidden
from api_gateway.hosts import PlatformHosts, normalize_host
from api_gateway.memo import Memo
from api_gateway.network import TrustedProxies
from api_gateway.types import Handler, Request, Response

HOST_MEMO_SIZE: Final = 4096
PLATFORM: Final = ""  # what the memo says of the platform's own hosts: nothing to resolve


class VenueDomain:
    """Resolves the client's host to a venue (or the platform), refuses another tenant's token,
    and tells the upstream which venue it is serving in ``x-venue-id`` / ``x-venue-tenant-id``."""

    def __init__(
        self,
        directory: VenueDirectory,
        platform: PlatformHosts,
        trusted: TrustedProxies,
        admin_roles: frozenset[str],
    ) -> None:
        self.directory, self.platform, self.trusted = directory, platform, trusted
        self.admin_roles = admin_roles
        # Raw Host value -> canonical lookup key, or PLATFORM for the platform's own hosts.
        self.keys: Memo[bytes, str] = Memo(HOST_MEMO_SIZE)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        key = self.lookup_key(self.trusted.client_host(request))
        if key is None:
            return call_next(request)
        hit = self.directory.domains.cached(key)
        if hit is None:
            return self.resolve_then(request, key, call_next)
        self.apply(request, hit.value)
        return call_next(request)

    async def resolve_then(self, request: Request, key: str, call_next: Handler) -> Response:
        self.apply(request, await self.directory.domains.get(key))
        return await call_next(request)

    def apply(self, request: Request, venue: DomainVenue | None) -> None:
        if venue is None:
            return  # no venue has this domain: the platform default, no venue headers
        claims = request.claims
        if (
            claims is not None
            and claims.tenant_id != venue.tenant_id
            and claims.role not in self.admin_roles
        ):
            raise Forbidden("this access token belongs to another tenant than this domain")
        request.upstream_headers += venue.headers

    def lookup_key(self, raw: bytes | None) -> str | None:
        if raw is None:
            return None  # HTTP/1.0 without Host: nothing to resolve
        key = self.keys.get(raw)
        if key is None:
            host = normalize_host(raw)  # raises InvalidHost (400); invalid values are not kept
            key = PLATFORM if host in self.platform else host.key
            self.keys.put(raw, key)
        return key or None
