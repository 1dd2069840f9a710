"""Which failed attempts may be tried again, how long to wait, and how many retries a service
may receive at once.

    attempt failed ─▶ worth retrying? (status / error, method, body replayable)
                   ─▶ attempts left? ─▶ budget allows? ─▶ backoff fits in the deadline? ─▶ retry

Retried: a connection that could not be made (nothing was sent, so any method); for idempotent
methods, or a request that carries an Idempotency-Key on a route that opts in, also resets,
timeouts and 502/503/504. Never retried: 4xx, and a request whose body cannot be replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from api_gateway.config.settings import RetryConfig
from api_gateway.errors import BadGateway, GatewayError, UpstreamTimeout

# RFC 9110 9.2.2: a repeat has the same effect as one request.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
RETRIED_ERRORS = (BadGateway, UpstreamTimeout)


def retryable_status(status: int, repeatable: bool) -> bool:
    return repeatable and status in RETRIED_STATUSES


def retryable_error(error: GatewayError, repeatable: bool, replayable: bool) -> bool:
    """``repeatable``: the method (or an Idempotency-Key) makes a repeat safe;
    ``replayable``: the gateway still holds the whole body to send again."""
    if not isinstance(error, RETRIED_ERRORS):
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


class RetryBudget:
    """Retries in flight stay under a share of the requests in flight (with a floor), so a
    failing service sees at most that much extra load however many clients retry."""

    __slots__ = ("active_requests", "active_retries", "minimum", "ratio")

    def __init__(self, config: RetryConfig) -> None:
        self.ratio = config.budget_pct / 100
        self.minimum = config.budget_min_concurrent
        self.active_requests = 0
        self.active_retries = 0

    def allows(self) -> bool:
        return self.active_retries < max(self.minimum, self.ratio * self.active_requests)
