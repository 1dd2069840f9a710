"""Which endpoints get the StripeWebhook policy (webhook_endpoints.py): each configured path
under the route a request for it reaches, an alias's too, and nothing else."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import GatewayConfig
from api_gateway.gateway import Gateway
from api_gateway.pipeline import RouteBuilder
from api_gateway.policies.webhooks import StripeWebhook
from api_gateway.stores.fallback import FallbackStore
from api_gateway.stores.memory import MemoryStore
from api_gateway.stores.redis import RedisStore
from api_gateway.webhook_endpoints import event_log
from api_gateway.webhook_events import MemoryEvents, RedisEvents

SECRET = {"secrets": ["whsec_endpoints_test"]}


def builder(
    routes: dict[str, Any] | None = None, stripe: dict[str, Any] | None = None
) -> RouteBuilder:
    document = copy.deepcopy(default_document())
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    document["routes"].update(routes or {})
    document["webhooks"]["stripe"].update(stripe or SECRET)
    loop = asyncio.new_event_loop()
    try:
        return Gateway(build(document), loop, 8080).builder
    finally:
        loop.close()


def verified(routes: RouteBuilder) -> dict[str, list[str]]:
    """Route prefix -> the endpoints (method path) whose chain verifies webhooks."""
    found: dict[str, list[str]] = {}
    for route in routes.config.routes:
        prefix = GatewayConfig.API_PREFIX + route.prefix
        for endpoint in routes.endpoints(route):
            policies, _ = routes.route_chain(route, prefix, endpoint)
            if any(isinstance(p, StripeWebhook) for p in policies):
                methods = ",".join(sorted(endpoint.methods))
                found.setdefault(route.prefix, []).append(f"{methods} {endpoint.path}")
    return found


def test_the_default_paths_are_post_endpoints_of_their_routes() -> None:
    assert verified(builder()) == {
        "/payments": ["POST /webhooks/stripe"],
        "/webhooks": ["POST /stripe"],
    }


def test_a_path_belongs_to_the_longest_route_above_it() -> None:
    routes = {"/webhooks/stripe": {"service": "payment", "public": ["/*"], "methods": ["POST"]}}

    found = verified(builder(routes))

    assert found["/webhooks/stripe"] == ["POST "]
    assert "/webhooks" not in found


def test_an_alias_of_a_route_verifies_its_paths_too() -> None:
    found = verified(builder({"/payment": {"alias_of": "/payments"}}))

    assert found["/payment"] == ["POST /webhooks/stripe"]


def test_a_configured_endpoint_of_the_path_gets_the_policy_in_its_own_chain() -> None:
    endpoint = {"path": "/Webhooks/Stripe", "methods": ["POST", "PUT"], "timeout_ms": 5000}
    routes = {"/payments": {"service": "payment", "endpoints": [endpoint]}}

    found = verified(builder(routes))

    assert found["/payments"] == ["POST,PUT /Webhooks/Stripe"]


def test_without_a_secret_no_chain_changes() -> None:
    routes = builder(stripe={"secrets": []})

    assert routes.webhooks is None
    assert verified(routes) == {}


def test_events_are_kept_where_the_limits_share_their_state() -> None:
    config = builder().config
    clock = lambda: 0.0  # noqa: E731 (never read: nothing is stored here)
    redis = RedisStore("redis://127.0.0.1:1")  # never connected
    shared = FallbackStore(redis)

    assert isinstance(event_log(config, MemoryStore(), clock), MemoryEvents)
    kept = event_log(config, shared, clock)
    assert isinstance(kept, RedisEvents)
    assert kept.redis is redis
    assert kept.prefix == "gateway:webhooks:stripe:"
