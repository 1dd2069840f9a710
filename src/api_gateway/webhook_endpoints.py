"""Which endpoints verify Stripe webhooks, and what their policies share: built once at
start-up from ``webhooks.stripe``. Every other endpoint pays nothing (pipeline.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from api_gateway.config.settings import (
    EndpointConfig,
    GatewayConfig,
    RouteConfig,
    StripeWebhooksConfig,
)
from api_gateway.policies.webhooks import Deduplication, StripeWebhook, WebhookCounts
from api_gateway.stores import Store
from api_gateway.webhook_events import EventLog, MemoryEvents, RedisEvents
from api_gateway.webhooks import StripeSignatures

log = logging.getLogger("api_gateway")
# A claim outlives its request's deadline by this: retries included, the service has answered.
IN_FLIGHT_MARGIN_MS: Final = 10_000


class StripeWebhooks:
    """What the webhook endpoints share, built once: the paths verified under each route, the
    secrets, the event store and the counts. Every other endpoint pays nothing."""

    def __init__(
        self,
        config: StripeWebhooksConfig,
        route_prefixes: Sequence[str],
        events: EventLog | None,
        clock_ms: Callable[[], float],
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.signatures = StripeSignatures(config.secrets, config.tolerance_ms / 1000)
        self.dedupe = None
        if events is not None and config.dedupe_ttl_ms > 0:
            self.dedupe = Deduplication(events, config.dedupe_ttl_ms, clock_ms)
        self.counts = WebhookCounts()
        self.wall_clock_s = wall_clock_s
        # Route prefix -> the paths below it (lower case: endpoints match without case), each
        # path under the longest prefix, the route the request would reach.
        self.owned: dict[str, list[str]] = {}
        for path in config.paths:
            owners = [p for p in route_prefixes if path == p or path.startswith(p + "/")]
            if owners:
                owner = max(owners, key=len)
                self.owned.setdefault(owner, []).append(path[len(owner) :].lower())

    def paths_of(self, route: RouteConfig) -> list[str]:
        """The verified paths below ``route``; an alias has its route's too (the same service
        handlers under another prefix)."""
        paths = list(self.owned.get(route.prefix, []))
        if route.alias_of is not None:
            paths += self.owned.get(route.alias_of, [])
        return paths

    def endpoints(self, route: RouteConfig) -> tuple[EndpointConfig, ...]:
        """The route's endpoints, and a POST endpoint for each verified path it lacks."""
        have = {(m, e.path.lower()) for e in route.endpoints for m in e.methods}
        missing = [path for path in self.paths_of(route) if ("POST", path) not in have]
        post = frozenset({"POST"})
        return route.endpoints + tuple(EndpointConfig(p, post, None, None) for p in missing)

    def policy(
        self, route: RouteConfig, endpoint: EndpointConfig, max_bytes: int, deadline_ms: int
    ) -> StripeWebhook | None:
        if "POST" not in endpoint.methods or endpoint.path.lower() not in self.paths_of(route):
            return None
        in_flight_ms = deadline_ms + IN_FLIGHT_MARGIN_MS
        return StripeWebhook(
            self.signatures, self.dedupe, self.counts, max_bytes, in_flight_ms, self.wall_clock_s
        )


def open_stripe_webhooks(
    config: GatewayConfig, store: Store, clock_ms: Callable[[], float]
) -> StripeWebhooks | None:
    """The webhook endpoints' shared parts, or None (and one warning) without a secret."""
    settings = config.stripe_webhooks
    if not settings.enabled:
        log.warning(
            "Stripe webhooks are not verified at the edge: STRIPE_WEBHOOK_SECRET is not set",
            extra={"paths": [GatewayConfig.API_PREFIX + p for p in settings.paths]},
        )
        return None
    events: EventLog | None = None
    if settings.dedupe_ttl_ms > 0:
        events = event_log(config, store, clock_ms)
    return StripeWebhooks(settings, [r.prefix for r in config.routes], events, clock_ms)


def event_log(config: GatewayConfig, store: Store, clock_ms: Callable[[], float]) -> EventLog:
    """Wherever the rate limits share their state over the Redis protocol (Redis, a Cluster, or
    any store that speaks the commands used), through the same client (one connection); with
    no such store, in this process."""
    from api_gateway.resp.client import RedisClient
    from api_gateway.resp.cluster import ClusterClient
    from api_gateway.stores.fallback import FallbackStore

    settings = config.stripe_webhooks
    shared = store.primary if isinstance(store, FallbackStore) else store
    if isinstance(shared, RedisClient | ClusterClient):
        return RedisEvents(shared, settings.key_prefix)  # no stand-in while it is down
    return MemoryEvents(settings.max_events, clock_ms)
