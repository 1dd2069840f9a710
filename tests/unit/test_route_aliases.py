"""Route aliases and the settings of the client-address and token-cache bounds, as configuration:
an alias is its route under a second prefix, and every setting that would weaken it is refused
with its key named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError, GatewayConfig, RouteConfig

ENV = {"JWT_SECRET": "a" * 32}


def config(tmp_path: Path, document: Any = None, **env: str) -> GatewayConfig:
    path = None
    if document is not None:
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(document))
    return load(None if path is None else str(path), {**ENV, **env})


def route(config: GatewayConfig, prefix: str) -> RouteConfig:
    return next(r for r in config.routes if r.prefix == prefix)


@pytest.mark.parametrize(("alias", "canonical"), [("/ticket", "/tickets"), ("/event", "/events")])
def test_a_seed_alias_is_its_route_under_another_prefix(
    tmp_path: Path, alias: str, canonical: str
) -> None:
    seed = config(tmp_path)
    expected = replace(route(seed, canonical), prefix=alias, alias_of=canonical)
    assert route(seed, alias) == expected


def test_the_ticket_alias_has_the_purchase_endpoint_and_body_validation(tmp_path: Path) -> None:
    ticket = route(config(tmp_path), "/ticket")
    tickets = route(config(tmp_path), "/tickets")
    endpoints = {e.path: e for e in ticket.endpoints}
    purchase = endpoints["/purchase"]
    assert purchase.limits == tickets.endpoints[0].limits and purchase.timeout_ms == 30000
    assert [limit.name for limit in purchase.limits] == [
        "ticket_purchase",
        "purchase_address",
        "purchase_event",
    ]
    assert purchase.idempotency == endpoints["/transfer"].idempotency == "optional"
    assert ticket.validation is not None and ticket.validation.json_body


def test_the_venue_alias_keeps_its_stricter_public_paths(tmp_path: Path) -> None:
    seed = config(tmp_path)
    assert route(seed, "/venue").public == ()
    assert route(seed, "/venue").service == route(seed, "/venues").service == "venue"


def test_an_override_of_the_route_reaches_its_alias(tmp_path: Path) -> None:
    document = {"routes": {"/tickets": {"timeout_ms": 1234, "idempotency_key_retries": True}}}
    ticket = route(config(tmp_path, document), "/ticket")
    assert (ticket.timeout_ms, ticket.idempotency_key_retries) == (1234, True)


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"alias_of": "/nowhere"}, "routes./ticket.alias_of"),
        ({"alias_of": "/event"}, "routes./ticket.alias_of"),  # an alias of an alias
        ({"alias_of": "/tickets", "public": ["/*"]}, "routes./ticket.public"),
        ({"alias_of": "/tickets", "public": ["/health", "/admin"]}, "routes./ticket.public"),
        ({"alias_of": "/tickets", "endpoints": []}, "routes./ticket.endpoints"),
        ({"alias_of": "/tickets", "service": "payment"}, "routes./ticket.service"),
        ({"alias_of": "/tickets", "validation": None}, "routes./ticket.validation"),
    ],
)
def test_an_alias_that_would_weaken_its_route_is_refused(
    tmp_path: Path, entry: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"routes": {"/ticket": entry}})
    assert info.value.key == key


def test_an_alias_caches_as_its_route_does(tmp_path: Path) -> None:
    document = {"routes": {"/events": {"cache": {"ttl_ms": 5}}}}
    event = route(config(tmp_path, document), "/event")
    assert event.cache is not None and (event.cache.enabled, event.cache.ttl_ms) == (True, 5)
    # A cache of its own would keep answers that a write through the route made stale.
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"routes": {"/event": {"alias_of": "/events", "cache": None}}})
    assert info.value.key == "routes./event.cache"


def test_ipv6_prefix_from_yaml_and_environment(tmp_path: Path) -> None:
    assert config(tmp_path).rate_limit_ipv6_prefix == 64
    assert config(tmp_path, {"rate_limit": {"ipv6_prefix": 56}}).rate_limit_ipv6_prefix == 56
    assert config(tmp_path, RATE_LIMIT_IPV6_PREFIX="48").rate_limit_ipv6_prefix == 48
    assert "ipv6_prefix" not in config(tmp_path).rate_limits


@pytest.mark.parametrize("value", [0, 129, "x"])
def test_an_ipv6_prefix_out_of_range_is_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"rate_limit": {"ipv6_prefix": value}})
    assert info.value.key == "rate_limit.ipv6_prefix"


def test_token_cache_bounds_from_yaml(tmp_path: Path) -> None:
    jwt = config(tmp_path).jwt
    assert (jwt.cache_max_bytes, jwt.max_token_bytes) == (96 * 1024 * 1024, 8192)
    document = {"jwt": {"cache_max_bytes": 1024, "max_token_bytes": 4096}}
    jwt = config(tmp_path, document).jwt
    assert (jwt.cache_max_bytes, jwt.max_token_bytes) == (1024, 4096)
    with pytest.raises(ConfigError) as info:
        config(tmp_path, {"jwt": {"max_token_bytes": 10}})
    assert info.value.key == "jwt.max_token_bytes"
