"""Response cache settings: the top-level ``cache`` section and each route's own ``cache``.

A route caches only when it has a ``cache`` section (``enabled`` defaults to true there); every
key of it is optional. The top-level section bounds the cache as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from api_gateway.config.sections import Section


@dataclass(frozen=True, slots=True)
class CacheConfig:
    max_entries: int  # in-memory storage: entries kept at most (least recently used go first)
    max_bytes: int  # in-memory storage: bytes of entries kept at most
    max_ttl_ms: int  # no entry lives longer, whatever the upstream says
    max_body_bytes: int  # the default cap of a route: larger bodies pass through unstored
    timeout_ms: int  # a storage call slower than this is a miss


@dataclass(frozen=True, slots=True)
class RouteCacheConfig:
    enabled: bool
    ttl_ms: int  # lifetime when the upstream gives none; 0: store only what the upstream allows
    per_user: bool  # responses differ per user: the user is part of the key
    max_body_bytes: int | None  # None: the top-level cache.max_body_bytes


def build_cache(s: Section) -> CacheConfig:
    config = CacheConfig(
        max_entries=s.integer("max_entries", 1),
        max_bytes=s.integer("max_bytes", 1024),
        max_ttl_ms=s.integer("max_ttl_ms", 1),
        max_body_bytes=s.integer("max_body_bytes", 0),
        timeout_ms=s.integer("timeout_ms", 1),
    )
    s.done()
    return config


def build_route_cache(route: Section) -> RouteCacheConfig | None:
    """The route's ``cache`` section, or None when it has none."""
    if route.raw("cache", None) is None:
        return None
    s = route.section("cache")
    body = s.raw("max_body_bytes", None)
    config = RouteCacheConfig(
        enabled=s.flag("enabled", True),
        ttl_ms=s.integer("ttl_ms", 0, 0),
        per_user=s.flag("per_user", False),
        max_body_bytes=None if body is None else s.integer("max_body_bytes", 0),
    )
    s.done()
    return config
