"""The response cache's settings: defaults, a route's own section, and bad keys named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api_gateway.config.cache import CacheConfig, RouteCacheConfig
from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError, GatewayConfig

ENV = {"JWT_SECRET": "a" * 32}


def loaded(tmp_path: Path, document: dict[str, Any] | None = None) -> GatewayConfig:
    path = None
    if document is not None:
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(document))
    return load(str(path) if path else None, ENV)


def route_cache(config: GatewayConfig, prefix: str) -> RouteCacheConfig | None:
    return next(r.cache for r in config.routes if r.prefix == prefix)


def test_defaults_cache_catalogue_reads_only(tmp_path: Path) -> None:
    config = loaded(tmp_path)
    assert config.cache == CacheConfig(10_000, 64 << 20, 86_400_000, 1 << 20, 100)
    enabled = {r.prefix for r in config.routes if r.cache is not None and r.cache.enabled}
    # The aliases /event and /venue cache as their routes do.
    assert enabled == {"/events", "/venues", "/search", "/event", "/venue"}
    assert route_cache(config, "/events") == RouteCacheConfig(True, 0, False, None)


def test_a_route_section_turns_caching_on_with_its_own_settings(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        {
            "routes": {
                "/tickets": {"cache": {"per_user": True, "ttl_ms": 5000, "max_body_bytes": 10}},
                "/search": {"cache": {"enabled": False}},
            }
        },
    )
    assert route_cache(config, "/tickets") == RouteCacheConfig(True, 5000, True, 10)
    cache = route_cache(config, "/search")
    assert cache is not None and not cache.enabled


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"routes": {"/events": {"cache": {"ttl": 5}}}}, "routes./events.cache.ttl"),
        ({"routes": {"/events": {"cache": {"ttl_ms": -1}}}}, "routes./events.cache.ttl_ms"),
        (
            {"routes": {"/events": {"cache": {"per_user": "maybe"}}}},
            "routes./events.cache.per_user",
        ),
        ({"routes": {"/events": {"cache": "yes"}}}, "routes./events.cache"),
        ({"cache": {"max_entries": 0}}, "cache.max_entries"),
        ({"cache": {"size": 1}}, "cache.size"),
    ],
)
def test_bad_cache_settings_are_named(tmp_path: Path, document: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        loaded(tmp_path, document)
    assert info.value.key == key
