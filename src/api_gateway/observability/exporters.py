"""Families read at scrape time from what the gateway keeps anyway: breakers and their
events, upstream attempts, instances' health and ejection, rate-limit decisions and the store's
fallbacks, the response cache, requests in flight, open connections and event-loop lag, and the
supervisor's reload counts. Nothing here runs per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Final

from api_gateway.http.connections import Connections
from api_gateway.observability.exposition import COUNTER, GAUGE, HISTOGRAM, Family, Labels
from api_gateway.overload import OverloadMonitor, requests_in_flight
from api_gateway.policies.cache import ResponseCache
from api_gateway.policies.idempotency import OUTCOMES, Idempotency
from api_gateway.policies.ratelimit import RateLimit
from api_gateway.policies.webhooks import WebhookCounts
from api_gateway.policies.websocket import WebSocketStats
from api_gateway.reload_status import read_reload_status
from api_gateway.stores import Store
from api_gateway.stores.fallback import FallbackStore
from api_gateway.upstream.breaker import Event, State
from api_gateway.upstream.service import UpstreamService

STATES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}
TRANSITIONS = {Event.OPEN: "open", Event.CLOSE: "closed", Event.HALF_OPEN: "half_open"}
DECISIONS = ("allowed", "refused", "unavailable", "unchecked")
# Written by the supervisor in the metrics directory after every reload attempt (absent before).
RELOAD_FILE: Final = "reload.json"


def _add(samples: dict[Labels, float], labels: Labels, value: float) -> None:
    samples[labels] = samples.get(labels, 0) + value


def service_families(services: Mapping[str, UpstreamService]) -> list[Family]:
    state, is_open, transitions, events, retries, exhausted = ({} for _ in range(6))
    attempts: dict[Labels, float] = {}
    latency: dict[Labels, list[float]] = {}
    for name, service in services.items():
        one: Labels = (("service", name),)
        state[one] = STATES[service.breaker.state]
        is_open[one] = int(service.breaker.state is not State.CLOSED)
        for event, label in TRANSITIONS.items():
            transitions[(*one, ("to", label))] = service.events[event]
        for event, count in service.events.items():
            events[(*one, ("event", event))] = count
        retries[one] = service.events["retry"]
        exhausted[one] = service.events["budget_exhausted"]
        for authority, histogram in service.attempt_latency.items():
            labels = (*one, ("instance", authority))
            attempts[labels] = sum(histogram.counts)
            latency[labels] = histogram.sample(scale=0.001)
    return [
        ("gateway_circuit_state", GAUGE,
         "Circuit breaker state by service: 0 closed, 1 half-open, 2 open.", state),
        ("gateway_circuit_open", GAUGE,
         "1 while a service's circuit is open or half-open.", is_open),
        ("gateway_circuit_transitions_total", COUNTER,
         "Circuit breaker transitions by service and the state entered.", transitions),
        ("gateway_upstream_events_total", COUNTER,
         "Breaker events, retries, budget exhaustion, ejections and panics by service.", events),
        ("gateway_upstream_retries_total", COUNTER, "Retried attempts by service.", retries),
        ("gateway_upstream_retry_budget_exhausted_total", COUNTER,
         "Retries refused because the service's retry budget was spent.", exhausted),
        ("gateway_upstream_attempts_total", COUNTER,
         "Attempts sent to a service, by service and instance.", attempts),
        ("gateway_upstream_attempt_duration_seconds", HISTOGRAM,
         "Time from sending an attempt to its response head (or error), by service and"
         " instance.", latency),
    ]  # fmt: skip


def instance_families(services: Mapping[str, UpstreamService], now_ms: float) -> list[Family]:
    """Each instance's health (the active check's verdict) and ejection (outlier detection),
    labelled with its address as configured or discovered: internal, so the metrics are for
    the operators' port."""
    healthy: dict[Labels, float] = {}
    ejected: dict[Labels, float] = {}
    for name, service in services.items():
        for endpoint in service.endpoints.endpoints:
            labels: Labels = (("service", name), ("instance", endpoint.authority))
            healthy[labels] = int(endpoint.healthy)
            ejected[labels] = int(now_ms < endpoint.ejected_until)
    return [
        ("gateway_upstream_instance_healthy", GAUGE,
         "1 while an instance passes its active health checks, by service and instance.",
         healthy),
        ("gateway_upstream_instance_ejected", GAUGE,
         "1 while outlier detection keeps an instance out of the balancer, by service and"
         " instance.", ejected),
    ]  # fmt: skip


def reload_families(directory: str | None) -> list[Family]:
    """The supervisor's counts (``reload.json``), shown once per scrape (not per worker); zeros
    while there is none, or it is unreadable: a scrape never fails over it."""
    status = read_reload_status(directory)
    ok, error, success = status.ok, status.error, status.last_success_unix
    return [
        ("gateway_config_reloads_total", COUNTER,
         "Configuration reloads (SIGHUP or POST /reload) by result: ok (applied) or error (the"
         " old configuration kept).", {(("result", "ok"),): ok, (("result", "error"),): error}),
        ("gateway_config_last_reload_success_timestamp_seconds", GAUGE,
         "When the configuration was last reloaded successfully (Unix seconds; 0: never).",
         {(): success or 0}),
    ]  # fmt: skip


def limit_families(limits: Iterable[RateLimit], store: Store) -> list[Family]:
    decisions: dict[Labels, float] = {}
    for limit in limits:
        for decision in DECISIONS:
            _add(
                decisions, (("limit", limit.name), ("decision", decision)), getattr(limit, decision)
            )
    families: list[Family] = [
        ("gateway_ratelimit_decisions_total", COUNTER,
         "Rate-limit decisions by limit: allowed, refused (429), unavailable (503, the store"
         " could not answer a route that fails closed), unchecked (let through).", decisions),
    ]  # fmt: skip
    if isinstance(store, FallbackStore):
        families += [
            ("gateway_ratelimit_store_degraded", GAUGE,
             "1 while Redis cannot answer and rate limits are decided in memory.",
             {(): int(store.degraded)}),
            ("gateway_ratelimit_fallback_decisions_total", COUNTER,
             "Rate-limit decisions taken in memory because Redis could not answer.",
             {(): store.fallback_decisions}),
            ("gateway_ratelimit_store_outages_total", COUNTER,
             "Times Redis became unavailable.", {(): store.outages}),
        ]  # fmt: skip
    return families


def cache_families(caches: Iterable[ResponseCache]) -> list[Family]:
    requests: dict[Labels, float] = {}
    stores: dict[Labels, float] = {}
    for cache in caches:
        route = ("route", cache.route.prefix)
        _add(requests, (route, ("result", "hit")), cache.hits)
        _add(requests, (route, ("result", "miss")), cache.misses)
        _add(stores, (route,), cache.stores)
    return [
        ("gateway_cache_requests_total", COUNTER,
         "GET and HEAD requests on caching routes by route and result (hit, miss).", requests),
        ("gateway_cache_stores_total", COUNTER, "Responses stored in the cache by route.", stores),
    ]  # fmt: skip


def idempotency_families(policies: Iterable[tuple[str, Idempotency]]) -> list[Family]:
    outcomes: dict[Labels, float] = {}
    for prefix, policy in policies:
        for outcome in OUTCOMES:
            _add(outcomes, (("route", prefix), ("outcome", outcome)), getattr(policy, outcome))
    return [
        ("gateway_idempotency_requests_total", COUNTER,
         "Keyed requests by route and outcome: stored (first answer kept), replayed, conflicts"
         " (409 in flight), mismatches (422), released (not kept: a retry is forwarded),"
         " unchecked (store down, forwarded), unavailable (store down, 503).", outcomes),
    ]  # fmt: skip


def process_families(
    loop: asyncio.AbstractEventLoop, overload: OverloadMonitor, connections: Connections | None
) -> list[Family]:
    return [
        ("gateway_requests_in_flight", GAUGE, "Requests being handled now.",
         {(): requests_in_flight(loop)}),
        ("gateway_open_connections", GAUGE,
         "Client connections open now (WebSocket tunnels are gateway_websockets_open).",
         {(): 0 if connections is None else len(connections.open)}),
        # Every task, background work included: a count that only grows is a leak (bench/soak.py).
        ("gateway_event_loop_tasks", GAUGE, "Tasks alive on the worker's event loop.",
         {(): len(asyncio.all_tasks(loop))}),
        ("gateway_event_loop_lag_seconds", GAUGE,
         "How late the latest event-loop timer fired (sampled every"
         " overload.sample_interval_ms).", {(): overload.last_lag_ms / 1000}),
        ("gateway_overloaded", GAUGE, "1 while rate limits are tightened for overload.",
         {(): int(overload.overloaded)}),
    ]  # fmt: skip


def websocket_families(stats: Iterable[tuple[str, WebSocketStats]]) -> list[Family]:
    handshakes: dict[Labels, float] = {}
    open_now: dict[Labels, float] = {}
    closed: dict[Labels, float] = {}
    moved: dict[Labels, float] = {}
    seconds: dict[Labels, float] = {}
    for route, one in stats:
        labels: Labels = (("route", route),)
        for result, count in one.handshakes.items():
            _add(handshakes, (*labels, ("result", result)), count)
        _add(open_now, labels, one.open)
        _add(closed, labels, one.closed)
        _add(moved, (*labels, ("direction", "client_to_upstream")), one.bytes_in)
        _add(moved, (*labels, ("direction", "upstream_to_client")), one.bytes_out)
        _add(seconds, labels, one.seconds)
    return [
        ("gateway_websocket_handshakes_total", COUNTER,
         "WebSocket handshakes by route and result (switched, refused, not_switched, failed).",
         handshakes),
        ("gateway_websockets_open", GAUGE, "Open WebSocket tunnels by route.", open_now),
        ("gateway_websockets_closed_total", COUNTER, "Closed WebSocket tunnels by route.", closed),
        ("gateway_websocket_bytes_total", COUNTER,
         "Bytes relayed through WebSocket tunnels by route and direction (closed tunnels).", moved),
        ("gateway_websocket_seconds_total", COUNTER,
         "Time WebSocket tunnels were open, by route (closed tunnels).", seconds),
    ]  # fmt: skip


def webhook_families(counts: WebhookCounts | None) -> list[Family]:
    """Verified Stripe webhooks by outcome (nothing while they are off)."""
    if counts is None:
        return []
    outcomes = {
        "verified": counts.verified,
        "rejected": counts.rejected,
        "duplicate": counts.duplicates,
        "in_flight": counts.in_flight,
        "unchecked": counts.unchecked,
    }
    samples: dict[Labels, float] = {(("outcome", k),): v for k, v in outcomes.items()}
    return [
        ("gateway_stripe_webhooks_total", COUNTER,
         "Stripe webhook deliveries by outcome: verified (a signature matched), rejected (400),"
         " duplicate (200, not forwarded), in_flight (409), unchecked (forwarded without"
         " deduplication: the event store was down).", samples),
    ]  # fmt: skip
