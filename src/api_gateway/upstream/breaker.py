"""The circuit breaker: a pure state machine over a rolling window, with an injected clock.

CLOSED ──(≥ volume_threshold calls in the window and error% ≥ threshold)──▶ OPEN
OPEN ──(reset_timeout elapsed)──▶ HALF_OPEN (at most ``half_open_probes`` calls at once)
HALF_OPEN ──a probe succeeds──▶ CLOSED (window cleared) / ──a probe fails──▶ OPEN

Every decision returns the events it caused, named as the platform's previous breaker named
them (open, close, halfOpen, failure, timeout, reject, success), so the shell can log and
count them without the core doing any I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from api_gateway.config.settings import BreakerConfig

BUCKETS: Final = 10


class State(Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class Event:
    """Event names (plain strings: they are counted on every call)."""

    OPEN: Final = "open"
    CLOSE: Final = "close"
    HALF_OPEN: Final = "halfOpen"
    FAILURE: Final = "failure"
    TIMEOUT: Final = "timeout"
    REJECT: Final = "reject"
    SUCCESS: Final = "success"


class Outcome(Enum):
    """How one call to the service ended, as far as the breaker cares."""

    SUCCESS = "success"
    FAILURE = "failure"  # connect error, reset, invalid response, or 5xx
    TIMEOUT = "timeout"
    IGNORED = "ignored"  # not the service's doing (the client went away): a probe is returned


EVENTS: Final = {
    Outcome.SUCCESS: Event.SUCCESS,
    Outcome.FAILURE: Event.FAILURE,
    Outcome.TIMEOUT: Event.TIMEOUT,
}
# Returned as this very object, so callers test it with `is` (typed variable-length: compiled,
# a fixed-length tuple would be rebuilt, and a new object, at every return).
SUCCESS_ONLY: Final[tuple[str, ...]] = (Event.SUCCESS,)


class Breaker:
    def __init__(self, config: BreakerConfig) -> None:
        self.threshold = config.error_threshold_pct / 100
        self.volume = config.volume_threshold
        self.reset_ms = config.reset_timeout_ms
        self.bucket_ms = config.window_ms / BUCKETS
        self.probes = config.half_open_probes
        self.state = State.CLOSED
        self.opened_at = 0.0
        self.probes_in_flight = 0
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.bucket_index = 0
        self.bucket_start = 0.0
        self.opens = 0
        # The other workers' calls and failures in their current windows (upstream.
        # breaker_sync), counted with this worker's own when deciding to open; and when this
        # breaker last closed, so that an open older than that is not adopted again.
        self.shared_calls = 0
        self.shared_failures = 0
        self.closed_at = -1.0

    def allow(self, now_ms: float) -> tuple[bool, tuple[str, ...]]:
        """May a call go to the service now? A refusal is a ``reject`` event."""
        state = self.state
        if state is State.CLOSED:
            return True, ()
        events: tuple[str, ...] = ()
        if state is State.OPEN:
            if now_ms - self.opened_at < self.reset_ms:
                return False, (Event.REJECT,)
            self.state = State.HALF_OPEN
            self.probes_in_flight = 0
            events = (Event.HALF_OPEN,)
        if self.probes_in_flight >= self.probes:
            return False, (*events, Event.REJECT)
        self.probes_in_flight += 1
        return True, events

    def record_success(self, now_ms: float) -> tuple[str, ...]:
        """``record(Outcome.SUCCESS)``, kept short for the call that ends nearly every request."""
        if self.state is not State.CLOSED:
            return self.record(Outcome.SUCCESS, now_ms)
        if now_ms - self.bucket_start >= self.bucket_ms:
            self._advance(now_ms)
        self.calls[self.bucket_index] += 1
        return SUCCESS_ONLY

    def record(self, outcome: Outcome, now_ms: float) -> tuple[str, ...]:
        """Count the end of a call that ``allow`` let through."""
        if outcome is Outcome.IGNORED:
            if self.state is State.HALF_OPEN and self.probes_in_flight:
                self.probes_in_flight -= 1
            return ()
        success = outcome is Outcome.SUCCESS
        event = EVENTS[outcome]
        if self.state is State.HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)
            if success:
                self._close(now_ms)
                return event, Event.CLOSE
            self._open(now_ms)
            return event, Event.OPEN
        if self.state is State.OPEN:
            # A call let through before the circuit opened: it no longer counts.
            return (event,)
        self._advance(now_ms)
        index = self.bucket_index
        self.calls[index] += 1
        if success:
            return (event,)
        self.failures[index] += 1
        calls = sum(self.calls) + self.shared_calls
        failures = sum(self.failures) + self.shared_failures
        if calls >= self.volume and failures >= self.threshold * calls:
            self._open(now_ms)
            return event, Event.OPEN
        return (event,)

    def window(self, now_ms: float) -> tuple[int, int, float]:
        """What this worker tells the others: its own calls and failures in the window (none
        unless closed: an open circuit's old failures must not open anyone again), and when
        it opened (0: it is closed)."""
        if self.state is not State.CLOSED:
            return 0, 0, self.opened_at
        self._advance(now_ms)
        return sum(self.calls), sum(self.failures), 0.0

    def share(self, calls: int, failures: int, opened_at: float, now_ms: float) -> tuple[str, ...]:
        """The other workers' windows, summed, and the latest time one of them opened (0:
        none is open). A closed circuit opens too when another worker's opened after this
        one last closed and is still within its reset timeout: one worker's evidence is the
        whole gateway's; so does one whose window, added to the others', is over the line.
        Clocks agree: every worker reads the same monotonic clock."""
        self.shared_calls, self.shared_failures = calls, failures
        if self.state is not State.CLOSED:
            return ()
        if opened_at > self.closed_at and now_ms - opened_at < self.reset_ms:
            self._open(opened_at)
            return (Event.OPEN,)
        # The gateway's window may have crossed the line between two failures of this worker.
        self._advance(now_ms)
        calls += sum(self.calls)
        if calls >= self.volume and failures + sum(self.failures) >= self.threshold * calls:
            self._open(now_ms)
            return (Event.OPEN,)
        return ()

    def reset(self, now_ms: float) -> tuple[str, ...]:
        """An operator closes the circuit (admin API): the window starts afresh, and an open
        another worker shared before now is not adopted again."""
        was = self.state
        self.probes_in_flight = 0
        self._close(now_ms)
        return (Event.CLOSE,) if was is not State.CLOSED else ()

    def retry_after_ms(self, now_ms: float) -> float:
        """How long until a call may be tried again (0 unless open)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.reset_ms - now_ms)

    def stats(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "calls": sum(self.calls),
            "failures": sum(self.failures),
            "opens": self.opens,
        }

    def _advance(self, now_ms: float) -> None:
        elapsed = int((now_ms - self.bucket_start) // self.bucket_ms)
        if elapsed <= 0:
            return
        for step in range(1, min(elapsed, BUCKETS) + 1):
            index = (self.bucket_index + step) % BUCKETS
            self.calls[index] = 0
            self.failures[index] = 0
        self.bucket_index = (self.bucket_index + elapsed) % BUCKETS
        self.bucket_start += elapsed * self.bucket_ms

    def _open(self, now_ms: float) -> None:
        self.state = State.OPEN
        self.opened_at = now_ms
        self.opens += 1

    def _close(self, now_ms: float) -> None:
        self.state = State.CLOSED
        self.closed_at = now_ms
        self.shared_calls = self.shared_failures = 0
        self.calls = [0] * BUCKETS
        self.failures = [0] * BUCKETS
        self.bucket_start = now_ms
