"""Which failed attempts may be tried again, how long to wait, and how many retries a service
may receive at once.

    attempt failed ─▶ worth retrying? (status / error, method, body replayable)
                   ─▶ attempts left? ─▶ budget allows? ─▶ backoff fits in the deadline? ─▶ retry

Retried: a connection that could not be made (nothing was sent, so any method); for idempotent
methods, or a request that carries an Idempotency-Key on a route that opts in, also resets,
timeouts and 502/503/504. Never retried: 4xx, a request whose body cannot be replayed, and an
answer the gateway cannot pass on (``UnusableResponse``: the service would answer the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from api_gateway.config.settings import RetryConfig
from api_gateway.errors import BadGateway, GatewayError, UnusableResponse, UpstreamTimeout

# RFC 9110 9.2.2: a repeat has the same effect as one request.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
RETRIED_ERRORS = (BadGateway, UpstreamTimeout)


def retryable_status(status: int, repeatable: bool) -> bool:
    return repeatable and status in RETRIED_STATUSES


def retryable_error(error: GatewayError, repeatable: bool, replayable: bool) -> bool:
    """``repeatable``: the method (or an Idempotency-Key) makes a repeat safe;
    ``replayable``: the gateway still holds the whole body to send again."""
    if not isinstance(error, RETRIED_ERRORS) or isinstance(error, UnusableResponse):
        return False
    if not error.request_sent:
        return True
    return repeatable and replayable


class Backoff:
    """Exponential backoff with full jitter: a wait drawn from [0, min(max, base·2ⁿ))."""

    def __init__(self, config: RetryConfig, uniform: Callable[[float, float], float]) -> None:
        self.base_ms, self.max_ms, self.uniform = config.base_ms, config.max_backoff_ms, uniform

    def delay_ms(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_ms, self.base_ms * 2 ** min(retry - 1, 32))
        return self.uniform(0.0, ceiling)


class Outage:
    """One instance's broken connections, counted as one event by the budget."""

    __slots__ = ("began_ms", "retries")

    def __init__(self, began_ms: float) -> None:
        self.began_ms = began_ms
        self.retries = 0  # retries in flight that it covers


# A retry's claim on the budget: a slot of its own, an outage (by instance), or nothing.
OWN_SLOT: Final = ""


class RetryBudget:
    """Retries in flight stay under a share of the requests in flight (with a floor), so a
    failing service sees at most that much extra load however many clients retry.

    A retry takes a slot; slots in use stay under ``max(minimum, ratio * requests in flight)``.
    An instance that dies breaks every connection on it at once: an outage. The attempts that
    were already in flight on it when its first connection broke (reset, closed, refused,
    garbage: a ``BadGateway``) were load the service had accepted, and the process that held
    it is gone, so trying each once more elsewhere adds no load. Their retries share the
    outage's one slot: counted one by one, a single death with more requests in flight than
    the floor would exhaust the budget that protects the whole service, and GETs would fail
    while other instances stand idle. Anything else takes a slot of its own: a 5xx or a
    timeout (a live instance doing work: the storm the budget is for), an attempt sent after
    the outage began (to an instance already dead), and any further retry of the same request.
    """

    __slots__ = ("active_requests", "active_retries", "minimum", "outages", "ratio")

    def __init__(self, config: RetryConfig) -> None:
        self.ratio = config.budget_pct / 100
        self.minimum = config.budget_min_concurrent
        self.active_requests = 0
        self.active_retries = 0  # slots in use: own slots, and one per outage
        self.outages: dict[str, Outage] = {}

    def allows(self) -> bool:
        return self.active_retries < max(self.minimum, self.ratio * self.active_requests)

    def claim(
        self, held: str | None, instance: str, sent_ms: float, now_ms: float, lost: bool
    ) -> str | None:
        """The claim a retry needs after an attempt sent at ``sent_ms`` to ``instance`` failed
        (``lost``: its connection broke), or None when the budget refuses. ``held`` is the
        request's claim from its previous retry: kept when returned, else released here."""
        outage = self.outages.get(instance) if lost else None
        if outage is not None and sent_ms < outage.began_ms:
            if held != instance:
                outage.retries += 1
                self.release(held)
            return instance
        if held == OWN_SLOT and self.allows():  # its own slot is among those counted
            return held
        self.release(held)
        if held == OWN_SLOT or not self.allows():
            return None
        self.active_retries += 1
        if lost and outage is None:
            self.outages[instance] = outage = Outage(now_ms)
            outage.retries = 1
            return instance
        return OWN_SLOT

    def release(self, claim: str | None) -> None:
        if claim is None:
            return
        if claim == OWN_SLOT:
            self.active_retries -= 1
            return
        outage = self.outages[claim]
        outage.retries -= 1
        if not outage.retries:
            del self.outages[claim]
            self.active_retries -= 1
