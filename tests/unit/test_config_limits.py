"""Route and endpoint ``limits:``, ``global`` and ``exempt``: the defaults, what they build, and
every refusal naming its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import ConfigError, GatewayConfig, LimitConfig, RouteConfig

TICKETS = {"service": "ticket", "validation": {"json_body": True}}


def config(routes: dict[str, Any] | None = None) -> GatewayConfig:
    document = copy.deepcopy(default_document())
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    document["routes"].update(routes or {})
    return build(document)


def route(seed: GatewayConfig, prefix: str) -> RouteConfig:
    return next(r for r in seed.routes if r.prefix == prefix)


def error(routes: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config(routes)
    return info.value


def test_the_purchase_has_its_three_limits_and_webhooks_their_own() -> None:
    seed = config()
    (purchase,) = [e for e in route(seed, "/tickets").endpoints if e.path == "/purchase"]
    assert [(c.name, c.limit, c.key) for c in purchase.limits] == [
        ("ticket_purchase", LimitConfig(5, 60_000, 300_000), ("user",)),
        ("purchase_address", LimitConfig(20, 60_000), ("ip",)),
        ("purchase_event", LimitConfig(2, 60_000), ("user", "body:eventId")),
    ]
    webhooks = route(seed, "/webhooks")
    assert not webhooks.global_limit
    assert [(c.name, c.limit, c.key) for c in webhooks.limits] == [
        ("webhooks_address", LimitConfig(1000, 60_000), ("ip",))
    ]
    assert all(r.global_limit for r in seed.routes if r.prefix != "/webhooks")
    # Stripe's deliveries through /payments: the same limit (and budget), no global one.
    stripe = next(e for e in route(seed, "/payments").endpoints if e.path == "/webhooks/stripe")
    assert stripe.global_limit is False
    assert stripe.limits == webhooks.limits


def test_probe_paths_are_exempt_where_they_are_public() -> None:
    seed = config()
    assert route(seed, "/venues").exempt == ("/health", "/metrics")
    assert route(seed, "/webhooks").exempt == ("/health", "/metrics")  # public: /*
    assert route(seed, "/auth").exempt == ()  # not public there: limited
    assert route(seed, "/venue").exempt == ()  # an alias that keeps them private


def test_the_old_endpoint_rate_limit_is_that_limit_per_user_or_address() -> None:
    endpoint = {"path": "/hold", "methods": ["POST"], "rate_limit": "ticket_purchase"}
    (hold,) = route(
        config({"/tickets": {**TICKETS, "endpoints": [endpoint]}}), "/tickets"
    ).endpoints
    assert [(c.name, c.key) for c in hold.limits] == [("ticket_purchase", ("user_or_ip",))]


def test_a_route_lists_limits_and_an_endpoint_adds_its_own() -> None:
    own = {
        **TICKETS,
        "limits": [{"limit": "global", "key": "tenant"}],
        "endpoints": [
            {
                "path": "/events/{eventId}/hold",
                "methods": ["POST"],
                "limits": [{"max": 3, "window_ms": 1000, "key": ["path:eventId", "header:X-A"]}],
            }
        ],
    }
    tickets = route(config({"/tickets": own}), "/tickets")
    assert [(c.name, c.key) for c in tickets.limits] == [("global", ("tenant",))]
    (hold,) = tickets.endpoints
    assert [(c.name, c.limit, c.key) for c in hold.limits] == [
        (
            "/tickets/events/{eventId}/hold[path:eventId,header:X-A]",
            LimitConfig(3, 1000),
            ("path:eventId", "header:X-A"),
        )
    ]


def limits_error(entry: dict[str, Any], route_extra: dict[str, Any] | None = None) -> str:
    endpoint = {"path": "/hold/{id}", "methods": ["POST"], "limits": [entry]}
    return str(error({"/tickets": {**TICKETS, **(route_extra or {}), "endpoints": [endpoint]}}))


KEY = "routes./tickets.endpoints[0].limits[0]"


@pytest.mark.parametrize(
    ("entry", "route_extra", "complaint"),
    [
        ({"limit": "nope", "key": "ip"}, None, f"{KEY}.limit: unknown rate limit 'nope'"),
        ({"limit": "global", "max": 3, "key": "ip"}, None, f"{KEY}.limit: name a rate_limit"),
        ({"max": 3, "window_ms": 1000}, None, f"{KEY}.key: is required"),
        ({"max": 3, "window_ms": 1000, "key": []}, None, f"{KEY}.key: must be a key"),
        ({"max": 3, "window_ms": 1000, "key": ["ip", "ip"]}, None, f"{KEY}.key: names a key twice"),
        ({"max": 3, "window_ms": 1000, "key": "cookie"}, None, f"{KEY}.key: unknown key 'cookie'"),
        ({"max": 3, "window_ms": 1000, "key": "header:a b"}, None, "'a b' is not a header name"),
        ({"max": 3, "window_ms": 1000, "key": "path:other"}, None, "segment {other}"),
        ({"max": 0, "window_ms": 1000, "key": "ip"}, None, f"{KEY}.max: must be at least 1"),
        ({"max": 3, "window_ms": 1000, "key": "ip", "burst": 2}, None, f"{KEY}.burst: unknown"),
        ({"name": "global", "max": 3, "window_ms": 1, "key": "ip"}, None, "'global' is a rate_"),
        (
            {"max": 3, "window_ms": 1000, "key": "body:eventId"},
            {"validation": {"json_body": False}},
            f"{KEY}.key: 'body:eventId' reads the JSON body",
        ),
    ],
)
def test_a_bad_limit_is_refused_naming_its_key(
    entry: dict[str, Any], route_extra: dict[str, Any] | None, complaint: str
) -> None:
    assert complaint in limits_error(entry, route_extra)


def test_a_route_level_path_key_is_refused() -> None:
    limits = [{"max": 3, "window_ms": 1000, "key": "path:id"}]
    message = str(error({"/tickets": {**TICKETS, "limits": limits}}))
    assert message.startswith("routes./tickets.limits[0].key: 'path:id' needs an endpoint")


@pytest.mark.parametrize(
    ("routes", "complaint"),
    [
        ({"/tickets": {**TICKETS, "global": "maybe"}}, "routes./tickets.global: must be true"),
        (
            {
                "/tickets": {
                    **TICKETS,
                    "endpoints": [{"path": "/a", "methods": ["GET"], "global": 2}],
                }
            },
            "routes./tickets.endpoints[0].global: must be true or false",
        ),
        ({"/tickets": {**TICKETS, "limits": {"key": "ip"}}}, "routes./tickets.limits: must be a"),
        (
            {"/tickets": {**TICKETS, "exempt": ["/health"]}},
            "routes./tickets.exempt: '/health' is not public on the route",
        ),
        (
            {"/tickets": {**TICKETS, "public": ["/x"], "exempt": ["/x/../y"]}},
            "routes./tickets.exempt: '/x/../y' is not a clean path",
        ),
        (
            {"/tickets": {**TICKETS, "endpoints": [{"path": "/a/{x}/{x}", "methods": ["GET"]}]}},
            "routes./tickets.endpoints[0].path: a parameter name appears twice",
        ),
        (
            {"/tickets": {**TICKETS, "endpoints": [{"path": "/a/b{x}", "methods": ["GET"]}]}},
            "a parameter is a whole segment",
        ),
    ],
)
def test_route_settings_of_limits_are_checked(routes: dict[str, Any], complaint: str) -> None:
    assert complaint in str(error(routes))


def test_an_exempt_list_may_be_emptied_or_name_other_public_paths() -> None:
    seed = config(
        {
            "/venues": {"service": "venue", "public": ["/health"], "exempt": []},
            "/events": {"service": "event", "public": ["/status/*"], "exempt": ["/status/live"]},
        }
    )
    assert route(seed, "/venues").exempt == ()
    assert route(seed, "/events").exempt == ("/status/live",)
