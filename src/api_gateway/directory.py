"""What the venue service says about venues and domains, cached per worker process.

Only facts are cached (which venue a domain is, which tenant a venue belongs to), never a
decision about a particular token: whoever asks next gets the same fact and its own decision,
so no answer prepared for tenant A can reach tenant B.

A lookup that fails (service down, circuit open, timeout, a malformed answer) is a 503, never
"no such venue": isolation fails closed, and a venue's domain does not silently turn into the
platform's. Only a domain seen before is served from its last good answer meanwhile
(``tenancy.domain_stale_if_error_ms``): that is still the venue-service's word, not a guess.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from api_gateway.config.tenancy import TenancyConfig
from api_gateway.errors import GatewayError, ServiceUnavailable
from api_gateway.lookups import CachedLookup
from api_gateway.types import Headers
from api_gateway.upstream.clients import Document

# Ids travel as header values, so they must be safe header tokens (the rule claims follow).
SAFE_ID: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
VENUE_HEADER: Final = b"x-venue-id"
VENUE_TENANT_HEADER: Final = b"x-venue-tenant-id"
# Bytes each cached answer may cost on average: ``cache_size`` entries, ``cache_size`` KiB.
ENTRY_BUDGET: Final = 1024


@dataclass(frozen=True, slots=True)
class DomainVenue:
    """The venue a custom domain belongs to, with its upstream headers rendered once."""

    venue_id: str
    tenant_id: str
    headers: Headers = field(compare=False)

    @classmethod
    def of(cls, venue_id: str, tenant_id: str) -> DomainVenue:
        headers = [(VENUE_HEADER, venue_id.encode()), (VENUE_TENANT_HEADER, tenant_id.encode())]
        return cls(venue_id, tenant_id, headers)


class VenueLookups(Protocol):
    """The venue service's answers the directory caches (``VenueServiceClient`` in the gateway)."""

    def resolve_domain(self, host: str) -> Awaitable[Document | None]: ...

    def get_venue(self, venue_id: str) -> Awaitable[Document | None]: ...


class VenueDirectory:
    def __init__(
        self, client: VenueLookups, config: TenancyConfig, clock_ms: Callable[[], float]
    ) -> None:
        self.client = client
        negative, size = config.negative_ttl_ms, config.cache_size
        # Keys are canonical hosts (at most 260 bytes) and venue ids (the isolation policy looks
        # up none over 128): an entry is well within 1 KiB, and the bound holds even if a longer
        # key ever reached a cache.
        max_bytes = size * ENTRY_BUDGET
        # A domain's last good answer stands in when venue-service fails (stale-if-error): a
        # venue's own domain keeps working through an outage, within the cache's bounds.
        self.domains: CachedLookup[DomainVenue] = CachedLookup(
            self._load_domain,
            config.domain_cache_ttl_ms,
            negative,
            size,
            clock_ms,
            max_bytes,
            config.domain_stale_if_error_ms,
        )
        self.owners: CachedLookup[str] = CachedLookup(
            self._load_owner, config.venue_cache_ttl_ms, negative, size, clock_ms, max_bytes
        )

    async def _load_domain(self, host: str) -> DomainVenue | None:
        try:
            document = await self.client.resolve_domain(host)
        except GatewayError as error:
            raise unavailable(f"the venue of domain {host}", error) from error
        if document is None:
            return None
        # venue-service answers {venue: {id, tenant_id, ...}, branding}; a flat
        # {venueId, tenantId} is read as well (README: "White-label domains").
        venue = document.get("venue")
        if isinstance(venue, dict):
            venue_id = safe_id(venue, "id", f"domain {host}")
            return DomainVenue.of(venue_id, tenant_of(venue, f"domain {host}"))
        venue_id = safe_id(document, "venueId", f"domain {host}")
        return DomainVenue.of(venue_id, tenant_of(document, f"domain {host}"))

    async def _load_owner(self, venue_id: str) -> str | None:
        try:
            document = await self.client.get_venue(venue_id)
        except GatewayError as error:
            raise unavailable(f"the tenant of venue {venue_id}", error) from error
        if document is None:
            return None
        return tenant_of(document, f"venue {venue_id}")


def tenant_of(document: Document, subject: str) -> str:
    """The tenant id, as venue-service's rows name it (``tenant_id``) or camel-cased."""
    key = "tenant_id" if "tenant_id" in document else "tenantId"
    return safe_id(document, key, subject)


def safe_id(document: Document, key: str, subject: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        raise ServiceUnavailable(f"venue-service sent no valid {key} for {subject}")
    return value


def unavailable(what: str, error: GatewayError) -> ServiceUnavailable:
    # Keep Retry-After when the venue service's circuit is open: the client may use it.
    retry_after = [header for header in error.headers if header[0] == b"retry-after"]
    return ServiceUnavailable(f"{what} could not be resolved: {error.detail}", retry_after)
