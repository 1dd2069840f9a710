"""The circuit breaker: a pure state machine over a rolling window, with an injected clock.

CLOSED ──(≥ volume_threshold calls in the window and error% ≥ threshold)──▶ OPEN
OPEN ──(reset_timeout elapsed)──▶ HALF_OPEN (one trial call at a time)
HALF_OPEN ──trial succeeds──▶ CLOSED (window cleared) / ──trial fails──▶ OPEN
"""

from __future__ import annotations

from enum import Enum

from api_gateway.config.settings import BreakerConfig

BUCKETS = 10
BUCKET_MS = 1000.0  # a 10 s rolling window, as the platform's previous breaker used


class State(Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class Breaker:
    def __init__(self, config: BreakerConfig) -> None:
        self.threshold = config.error_threshold_pct / 100
        self.volume = config.volume_threshold
        self.reset_ms = config.reset_timeout_ms
        self.state = State.CLOSED
        self.opened_at = 0.0
        self.trial_in_flight = False
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.bucket_index = 0
        self.bucket_start = 0.0
        self.opens = 0

    def allow(self, now_ms: float) -> bool:
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            if now_ms - self.opened_at < self.reset_ms:
                return False
            self.state = State.HALF_OPEN
            self.trial_in_flight = False
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def record(self, success: bool, now_ms: float) -> None:
        if self.state is State.HALF_OPEN:
            self.trial_in_flight = False
            if success:
                self._close(now_ms)
            else:
                self._open(now_ms)
            return
        if self.state is State.OPEN:
            return
        self._advance(now_ms)
        index = self.bucket_index
        self.calls[index] += 1
        if not success:
            self.failures[index] += 1
            calls = sum(self.calls)
            if calls >= self.volume and sum(self.failures) >= self.threshold * calls:
                self._open(now_ms)

    def stats(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "calls": sum(self.calls),
            "failures": sum(self.failures),
            "opens": self.opens,
        }

    def _advance(self, now_ms: float) -> None:
        elapsed = int((now_ms - self.bucket_start) // BUCKET_MS)
        if elapsed <= 0:
            return
        for step in range(1, min(elapsed, BUCKETS) + 1):
            index = (self.bucket_index + step) % BUCKETS
            self.calls[index] = 0
            self.failures[index] = 0
        self.bucket_index = (self.bucket_index + elapsed) % BUCKETS
        self.bucket_start += elapsed * BUCKET_MS

    def _open(self, now_ms: float) -> None:
        self.state = State.OPEN
        self.opened_at = now_ms
        self.opens += 1

    def _close(self, now_ms: float) -> None:
        self.state = State.CLOSED
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.bucket_start = now_ms
