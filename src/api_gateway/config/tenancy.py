"""The ``tenancy`` section: white-label domain routing and venue isolation."""

from __future__ import annotations

from dataclasses import dataclass

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError
from api_gateway.errors import InvalidHost
from api_gateway.hosts import normalize_host
from api_gateway.venue_refs import VenuePattern


@dataclass(frozen=True, slots=True)
class TenancyConfig:
    domain_routing: bool
    venue_isolation: bool
    platform_domains: tuple[str, ...]  # canonical names, or "*.name" for any subdomain
    domain_cache_ttl_ms: int
    # How long after a domain's answer was fetched it may stand in for a failed lookup.
    domain_stale_if_error_ms: int
    venue_cache_ttl_ms: int
    negative_ttl_ms: int  # for "no such domain" and "no such venue"
    cache_size: int  # per cache, per worker process
    admin_roles: frozenset[str]
    venue_paths: tuple[VenuePattern, ...]
    venue_params: tuple[str, ...]


def build_tenancy(s: Section) -> TenancyConfig:
    config = TenancyConfig(
        domain_routing=s.flag("domain_routing"),
        venue_isolation=s.flag("venue_isolation"),
        platform_domains=tuple(
            platform_domain(entry, s.key("platform_domains"))
            for entry in s.texts("platform_domains")
        ),
        domain_cache_ttl_ms=s.integer("domain_cache_ttl_ms", 0),
        domain_stale_if_error_ms=s.integer("domain_stale_if_error_ms", 0),
        venue_cache_ttl_ms=s.integer("venue_cache_ttl_ms", 0),
        negative_ttl_ms=s.integer("negative_ttl_ms", 0),
        cache_size=s.integer("cache_size", 1),
        admin_roles=frozenset(s.texts("admin_roles")),
        venue_paths=tuple(
            VenuePattern.parse(p, s.key("venue_paths")) for p in s.texts("venue_paths")
        ),
        venue_params=s.texts("venue_params"),
    )
    s.done()
    return config


def platform_domain(entry: str, key: str) -> str:
    """A host name in canonical form (``*.`` kept), without a port."""
    wildcard = entry.startswith("*.")
    try:
        host = normalize_host(entry.removeprefix("*.").encode())
    except InvalidHost as exc:
        raise ConfigError(key, f"{entry!r} is not a host name") from exc
    if host.port is not None or ":" in entry:
        raise ConfigError(key, f"{entry!r} must not carry a port")
    return f"*.{host.name}" if wildcard else host.name
