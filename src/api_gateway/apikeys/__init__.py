"""API keys (``api-gateway apikey``): partner and device credentials checked at the edge.

``format`` (the key's shape and hash), ``records`` (what is stored, and the pure rules),
``sqlite``/``redis`` (the stores), ``checker`` (``ApiKeys``: key -> claims, cached),
``limit`` (a key's own rate limit), ``commands`` (the CLI's actions).
"""

from __future__ import annotations

from api_gateway.apikeys.checker import ApiKeys
from api_gateway.apikeys.store import open_key_store
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.stores import Store, StoreUnavailable

__all__ = ["ApiKeys", "open_api_keys"]


def open_api_keys(config: GatewayConfig, limit_store: Store) -> ApiKeys:
    """The worker's key checker; ``limit_store`` counts the keys' own rate limits."""
    try:
        keys = open_key_store(config)
    except StoreUnavailable as exc:
        raise ConfigError("api_keys.path", str(exc)) from None
    return ApiKeys(keys, config.api_keys, limit_store)
