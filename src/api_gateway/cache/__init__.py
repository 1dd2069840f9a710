"""The response cache: rules (pure), the entry format, storage in memory or Redis."""

from __future__ import annotations

from api_gateway.cache.front import Cache
from api_gateway.cache.storage import CacheStorage, MemoryCacheStorage, monotonic_ms
from api_gateway.config.settings import GatewayConfig
from api_gateway.stores import Store


def open_cache(config: GatewayConfig, store: Store) -> Cache:
    """In Redis next to the other shared state when it is configured, else in this process."""
    settings = config.cache
    storage: CacheStorage
    if config.redis_url is None:
        storage = MemoryCacheStorage(
            settings.max_entries,
            settings.max_bytes,
            settings.max_ttl_ms,
            monotonic_ms,
        )
    else:
        from api_gateway.cache.redis import RedisCacheStorage
        from api_gateway.resp.client import RedisClient
        from api_gateway.resp.cluster import ClusterClient
        from api_gateway.stores.fallback import FallbackStore

        # The cache has no in-memory stand-in: it speaks to Redis itself, through the client
        # the rate-limit store is (one connection), and a miss is its answer while Redis is down.
        shared = store.primary if isinstance(store, FallbackStore) else store
        assert isinstance(shared, RedisClient | ClusterClient)
        storage = RedisCacheStorage(shared, settings.max_ttl_ms)
    return Cache(storage, settings.timeout_ms / 1000)
