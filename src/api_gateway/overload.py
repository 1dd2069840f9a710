"""Overload detection, so rate limits can tighten while the gateway itself is struggling.

The signals are sampled, never measured per request: event-loop lag (how late a timer fires)
and requests in flight (the data plane runs every request as a task of its own name).
Overload starts when either crosses its threshold and ends only after both stayed below for
``recover_after_ms``, so limits do not flap at the boundary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from api_gateway.config.settings import OverloadConfig
from api_gateway.http.server import TASK_NAME

log = logging.getLogger("api_gateway.overload")


def requests_in_flight(loop: asyncio.AbstractEventLoop) -> int:
    """The data plane runs each request as a task of its own name; background work does not."""
    return sum(1 for task in asyncio.all_tasks(loop) if task.get_name() == TASK_NAME)


class OverloadState:
    """The pure decision: fed samples, says whether the gateway is overloaded."""

    def __init__(self, config: OverloadConfig) -> None:
        self.config = config
        self.overloaded = False
        self.calm_since: float | None = None

    def observe(self, lag_ms: float, in_flight: int, now_ms: float) -> bool:
        """Take one sample; return whether the verdict changed."""
        config = self.config
        hot = lag_ms > config.lag_threshold_ms or in_flight > config.in_flight_threshold
        if hot:
            self.calm_since = None
            if not self.overloaded:
                self.overloaded = True
                return True
            return False
        if not self.overloaded:
            return False
        if self.calm_since is None:
            self.calm_since = now_ms
        if now_ms - self.calm_since >= config.recover_after_ms:
            self.overloaded, self.calm_since = False, None
            return True
        return False


class OverloadMonitor:
    """Samples the running loop on a timer and keeps an ``OverloadState`` up to date."""

    def __init__(self, config: OverloadConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.state = OverloadState(config)
        self.loop = loop
        self.interval_s = config.sample_interval_ms / 1000
        self.expected = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.count_requests: Callable[[], int] = lambda: requests_in_flight(loop)
        self.last_lag_ms = 0.0

    @property
    def overloaded(self) -> bool:
        return self.state.overloaded

    def start(self) -> None:
        # Sampled even when limits do not tighten: the lag is a metric as well.
        self._schedule()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _schedule(self) -> None:
        self.expected = self.loop.time() + self.interval_s
        self.timer = self.loop.call_at(self.expected, self._sample)

    def _sample(self) -> None:
        now = self.loop.time()
        self.last_lag_ms = max(0.0, (now - self.expected) * 1000)
        in_flight = self.count_requests()
        if self.state.config.enabled and self.state.observe(
            self.last_lag_ms, in_flight, now * 1000
        ):
            if self.state.overloaded:
                log.warning(
                    "overloaded: rate limits tightened",
                    extra={"lag_ms": round(self.last_lag_ms, 1), "in_flight": in_flight},
                )
            else:
                log.warning("load back to normal: rate limits restored")
        self._schedule()
