"""The policy order of every route, decided in pipeline.py alone, printed and pinned here.

A change to the order is a change to this text: reviewed, not stumbled upon. Built by the
gateway from the default configuration, without a network (nothing connects while routes are
built).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable
from typing import Any

from api_gateway.aggregation.fetch import Fetcher
from api_gateway.aggregation.templates import literal_prefix
from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import GatewayConfig
from api_gateway.gateway import Gateway
from api_gateway.network import TrustedProxies
from api_gateway.observability.metrics import Metrics
from api_gateway.pipeline import AGGREGATE_BASE, RouteBuilder, outer_policies
from api_gateway.policies.context import RequestContext, Stamper
from api_gateway.policies.ratelimit import RateLimit
from api_gateway.policies.security_headers import SecurityHeaders
from api_gateway.types import Handler, Request, Response


def default_config(**overrides: Any) -> GatewayConfig:
    document = copy.deepcopy(default_document())
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    document.update(overrides)
    return build(document)


def builder(config: GatewayConfig) -> RouteBuilder:
    """The route builder of a gateway built as ``serve`` builds it (nothing connects yet)."""
    loop = asyncio.new_event_loop()
    try:
        return Gateway(config, loop, 8080).builder
    finally:
        loop.close()


def name(step: object) -> str:
    if isinstance(step, RateLimit):
        return f"RateLimit({step.name})"
    if isinstance(step, str):
        return step
    return getattr(step, "__qualname__", type(step).__name__)


def render(policies: list[Any], terminal: object) -> str:
    return " > ".join([name(p) for p in policies] + [name(terminal)])


def chains(config: GatewayConfig) -> str:
    routes = builder(config)
    lines = []
    for aggregate in config.aggregates:
        prefix = AGGREGATE_BASE + literal_prefix(aggregate.path)
        fetch = Fetcher(routes.services, routes.pool, routes.clock_ms, None)
        chain = render(*routes.aggregate_chain(aggregate, prefix, fetch))
        lines.append(f"aggregate {aggregate.path.text}: {chain}")
    for route in config.routes:
        prefix = GatewayConfig.API_PREFIX + route.prefix
        lines.append(f"{route.prefix}: {render(*routes.route_chain(route, prefix, None))}")
        if route.exempt:
            probe = render(*routes.route_chain(route, prefix, None, exempt=True))
            lines.append(f"{route.prefix} GET,HEAD {','.join(route.exempt)}: {probe}")
        for endpoint in routes.endpoints(route):
            methods = ",".join(sorted(endpoint.methods))
            chain = render(*routes.route_chain(route, prefix, endpoint))
            lines.append(f"{route.prefix} {methods} {endpoint.path}: {chain}")
    return "\n".join(lines)


EXPECTED_ROUTES = """
aggregate /events/{eventId}: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > Aggregate
aggregate /dashboard: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > Aggregate
/auth: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth POST /login: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth POST /register: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth POST /refresh: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth POST /forgot-password: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth POST /reset-password: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/auth GET /verify-email: RequestBounds > RateLimit(global) > QueryValidation > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/venues: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/venues GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/events: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/events GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/tickets: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/tickets GET,HEAD /health,/metrics: RequestBounds > Authenticate > JsonBody > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/tickets POST /purchase: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > RateLimit(ticket_purchase) > RateLimit(purchase_address) > RateLimit(purchase_event) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/tickets POST /types: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/tickets POST /transfer: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/tickets POST /validate-qr: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments: RequestBounds > RateLimit(global) > Authenticate > Idempotency > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments GET,HEAD /health,/metrics: RequestBounds > Authenticate > Idempotency > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments POST /process: RequestBounds > RateLimit(global) > Authenticate > Idempotency > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments POST /: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments POST /calculate-fees: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments POST /{id}/refund: RequestBounds > RateLimit(global) > Authenticate > Idempotency > PathParams > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/payments POST /webhooks/stripe: RequestBounds > Authenticate > Idempotency > RateLimit(user) > RateLimit(webhooks_address) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/orders: RequestBounds > RateLimit(global) > Authenticate > Idempotency > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/orders GET,HEAD /health,/metrics: RequestBounds > Authenticate > Idempotency > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/webhooks: RequestBounds > Authenticate > RateLimit(user) > RateLimit(webhooks_address) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/webhooks GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/marketplace: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/marketplace GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/marketplace POST /listings: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/analytics: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/analytics GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/notifications: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/notifications GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/compliance: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/compliance GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/queue: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/queue GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/search: RequestBounds > RateLimit(global) > QueryValidation > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/search GET,HEAD /health,/metrics: RequestBounds > QueryValidation > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/files: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/files GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/monitoring: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/monitoring GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/integrations: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/integrations GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/event: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/event GET,HEAD /health,/metrics: RequestBounds > Authenticate > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
/ticket: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/ticket GET,HEAD /health,/metrics: RequestBounds > Authenticate > JsonBody > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/ticket POST /purchase: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > RateLimit(ticket_purchase) > RateLimit(purchase_address) > RateLimit(purchase_event) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/ticket POST /types: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/ticket POST /transfer: RequestBounds > RateLimit(global) > Authenticate > Idempotency > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/ticket POST /validate-qr: RequestBounds > RateLimit(global) > Authenticate > JsonBody > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/venue: RequestBounds > RateLimit(global) > Authenticate > RateLimit(user) > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > ResponseCache > UpstreamCall
"""  # noqa: E501 (one chain per line reads best)


def test_every_routes_chain_is_in_the_pinned_order() -> None:
    assert chains(default_config()) == EXPECTED_ROUTES.strip()


# With STRIPE_WEBHOOK_SECRET set: only Stripe's two endpoints change, each a chain of its own.
EXPECTED_WEBHOOK_ENDPOINTS = """
/payments POST /webhooks/stripe: RequestBounds > Authenticate > Idempotency > RateLimit(user) > RateLimit(webhooks_address) > StripeWebhook > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
/webhooks POST /stripe: RequestBounds > Authenticate > RateLimit(user) > RateLimit(webhooks_address) > StripeWebhook > VenueDomain > VenueIsolation > HeaderTrust > WebSocketGate > UpstreamCall
"""  # noqa: E501 (one chain per line reads best)


def test_verified_webhooks_add_their_endpoints_and_nothing_else() -> None:
    """StripeWebhook joins the chains of Stripe's two endpoints (the one under /payments is
    configured already, for its limits; the one under /webhooks is added) and no other."""
    secret = {"stripe": {"secrets": ["whsec_order_test"]}}
    lines = chains(default_config(webhooks=secret)).splitlines()
    expected = EXPECTED_ROUTES.strip().splitlines()
    added = EXPECTED_WEBHOOK_ENDPOINTS.strip().splitlines()

    assert sorted(line for line in lines if "StripeWebhook" in line) == added
    unverified = [line.replace(" > StripeWebhook", "") for line in lines]
    assert [
        line for line in unverified if not line.startswith("/webhooks POST /stripe")
    ] == expected


def server_span(request: Request, call_next: Handler) -> Awaitable[Response]:
    """Stands in for tracing's server span (``Tracing.server_span``)."""
    return call_next(request)


def test_the_outer_policies_come_before_dispatch_tracing_first() -> None:
    config = default_config(cors_origins=["https://app.example"])
    stamper = Stamper(SecurityHeaders(config.security_headers))
    context = RequestContext(TrustedProxies(()), lambda: 0.0, Metrics({}), None, stamper)

    plain = outer_policies(config, context)
    traced = outer_policies(config, context, server_span)

    assert render(plain, "dispatch") == "RequestContext > Cors > dispatch"
    assert render(traced, "dispatch") == "server_span > RequestContext > Cors > dispatch"
