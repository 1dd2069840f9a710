"""What the gateway keeps per backend service, shared by every route to it: its instances,
circuit breaker, balancer, outlier detection, retry settings and budget, and event counts.
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_left
from collections import Counter
from typing import Final

from api_gateway.config.settings import ServiceConfig
from api_gateway.errors import BadGateway, UpstreamTimeout
from api_gateway.observability.exposition import BUCKETS_MS, Histogram
from api_gateway.signing import Signer
from api_gateway.upstream.balancer import build_balancer
from api_gateway.upstream.breaker import SUCCESS_ONLY, Breaker, Event, Outcome
from api_gateway.upstream.instances import ServiceInstances, UpstreamInstance
from api_gateway.upstream.outlier import OutlierDetector
from api_gateway.upstream.retry import Backoff, RetryBudget

log = logging.getLogger("api_gateway.upstream")
TRANSITIONS: Final = frozenset({Event.OPEN, Event.CLOSE, Event.HALF_OPEN})
# Instances whose last break is remembered (discovery may churn addresses: the oldest go first).
MAX_BREAKS: Final = 256


class UpstreamService:
    def __init__(
        self, config: ServiceConfig, endpoints: ServiceInstances, rng: random.Random
    ) -> None:
        self.name, self.label = config.name, f"{config.name}-service"
        self.endpoints = endpoints
        self.breaker = Breaker(config.circuit_breaker)
        self.breaker_statuses = config.circuit_breaker.failure_statuses
        self.budget = RetryBudget(config.retry)
        self.backoff = Backoff(config.retry, rng.uniform)
        self.attempts = config.retry.attempts
        self.per_try_ms = config.retry.per_try_timeout_ms
        self.balancer = build_balancer(config.load_balancer, endpoints, rng.randrange)
        self.outlier = OutlierDetector(config.outlier, endpoints)
        # Breaker events by name, plus "retry", "budget_exhausted", "ejection", "panic".
        self.events: Counter[str] = Counter()
        self.panicking = False
        # Attempts and their time to the response head (ms), by instance authority.
        self.attempt_latency: dict[str, Histogram] = {}
        # When each instance's connections last broke, by authority, until it serves again.
        self.breaks: dict[str, float] = {}
        # Signs every request sent to the service (INTERNAL_HMAC_SECRET); None: unsigned.
        self.signer: Signer | None = None

    def observe_attempt(self, authority: str, elapsed_ms: float) -> None:
        histogram = self.attempt_latency.get(authority)
        if histogram is None:
            histogram = self.attempt_latency[authority] = Histogram()
        histogram.counts[bisect_left(BUCKETS_MS, elapsed_ms)] += 1
        histogram.sum += elapsed_ms

    def admit(self, now_ms: float) -> bool:
        allowed, events = self.breaker.allow(now_ms)
        if events:
            self._note(events)
        return allowed

    def succeeded(self, endpoint: UpstreamInstance, now_ms: float) -> None:
        if endpoint.consecutive_failures or endpoint.ejections:
            self.outlier.success(endpoint, now_ms)
        if self.breaks:
            self.breaks.pop(endpoint.authority, None)
        events = self.breaker.record_success(now_ms)
        if events is SUCCESS_ONLY:
            self.events[Event.SUCCESS] += 1
        else:
            self._note(events)

    def answered(self, now_ms: float) -> None:
        """The request's final answer is an error of its own (a 500 from one path, not a
        status in ``circuit_breaker.failure_statuses``): the service is up and answering."""
        events = self.breaker.record_success(now_ms)
        if events is SUCCESS_ONLY:
            self.events[Event.SUCCESS] += 1
        else:
            self._note(events)

    def attempt_failed(self, endpoint: UpstreamInstance, now_ms: float) -> None:
        """An attempt the instance is to blame for: an error of its own, or a 5xx answer."""
        if self.outlier.failure(endpoint, now_ms):
            self.events["ejection"] += 1
            log.warning(
                "instance ejected",
                extra={
                    "service": self.label,
                    "instance": endpoint.authority,
                    "ejections": endpoint.ejections,
                },
            )

    def gave_up(
        self, error: Exception | None, now_ms: float, endpoint: UpstreamInstance, sent_ms: float
    ) -> None:
        """The request failed after every attempt it was allowed: the service failed a caller.

        The breaker counts requests, not attempts: a failure a retry recovered from is the
        instance's (outlier detection), not the service's. Likewise an instance that dies
        breaks every connection on it at once: the requests that cannot be sent again (POSTs)
        fail together, and that is one failure of the service, not one per request in flight.
        """
        if isinstance(error, UpstreamTimeout):
            outcome = Outcome.TIMEOUT
        elif isinstance(error, BadGateway) and self.same_break(endpoint, sent_ms, now_ms):
            outcome = Outcome.IGNORED
        else:
            outcome = Outcome.FAILURE
        self._note(self.breaker.record(outcome, now_ms))

    def same_break(self, endpoint: UpstreamInstance, sent_ms: float, now_ms: float) -> bool:
        """Whether a broken connection (an attempt sent at ``sent_ms``) belongs to a break of
        its instance already counted: it was in flight when that break was first seen, and the
        instance has served nothing since. Otherwise this is a break of its own, remembered."""
        authority = endpoint.authority
        began = self.breaks.get(authority)
        if began is not None and sent_ms < began:
            return True
        if began is None and len(self.breaks) >= MAX_BREAKS:
            del self.breaks[next(iter(self.breaks))]
        self.breaks[authority] = now_ms
        return False

    def not_blamed(self, now_ms: float) -> None:
        """An attempt ended by something that is not the service's doing (the client left)."""
        self.breaker.record(Outcome.IGNORED, now_ms)

    def note_panic(self, panicking: bool) -> None:
        if panicking is self.panicking:
            return
        self.panicking = panicking
        if panicking:
            self.events["panic"] += 1
            log.warning(
                "no healthy instance: trying all of them (panic mode)",
                extra={"service": self.label},
            )
        else:
            log.warning("healthy instances again", extra={"service": self.label})

    def share_breaker(self, calls: int, failures: int, opened_at: float, now_ms: float) -> None:
        """The other workers' breaker windows for this service (upstream.breaker_sync)."""
        self._note(self.breaker.share(calls, failures, opened_at, now_ms))

    def reset_breaker(self, now_ms: float) -> None:
        """Close the breaker at an operator's word (admin API)."""
        self._note(self.breaker.reset(now_ms))

    def _note(self, events: tuple[str, ...]) -> None:
        counts = self.events
        for event in events:
            counts[event] += 1
            if event in TRANSITIONS:
                log.warning("circuit %s", event, extra={"service": self.label})
            else:
                log.debug("circuit %s", event, extra={"service": self.label})

    def snapshot(self, now_ms: float) -> dict[str, object]:
        return {**self.breaker.stats(), "events": dict(self.events)}
