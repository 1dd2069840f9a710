"""Rate-limit arithmetic: GCRA (the generic cell rate algorithm), pure and clock-free.

One number per key, the theoretical arrival time (TAT), gives an exact "``max`` per
``window``" limit with smooth refill: a full burst of ``max`` is allowed, after which one
request is allowed every ``window / max``. The memory store runs this function; the Redis store
runs the same arithmetic in a Lua script, so both modes decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from api_gateway.config.settings import LimitConfig

# Clock readings have fractions, so sums of intervals carry rounding error; a nanosecond of
# tolerance keeps a full burst from losing its last request to that error.
EPSILON_MS: Final = 1e-6


class Decision:
    """One request's answer. A plain class, not a dataclass: compiled, a dataclass's generated
    ``__init__`` would still run interpreted, twice per request."""

    __slots__ = ("allowed", "remaining", "reset_ms", "retry_after_ms")

    def __init__(self, allowed: bool, remaining: int, retry_after_ms: int, reset_ms: int) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.retry_after_ms = retry_after_ms  # when denied: until one request would be allowed
        self.reset_ms = reset_ms  # until the bucket is full again

    def fields(self) -> tuple[bool, int, int, int]:
        return self.allowed, self.remaining, self.retry_after_ms, self.reset_ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        allowed, remaining, retry_after_ms, reset_ms = self.fields()
        return f"Decision({allowed}, {remaining}, {retry_after_ms}, {reset_ms})"


@dataclass(frozen=True, slots=True)
class Rate:
    """A limit in the units GCRA needs: emission interval and window, in milliseconds."""

    max: int
    window_ms: int
    block_ms: int
    interval_ms: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_ms", self.window_ms / self.max)

    @classmethod
    def of(cls, limit: LimitConfig) -> Rate:
        return cls(limit.max, limit.window_ms, limit.block_ms)


def gcra(tat_ms: float | None, now_ms: float, rate: Rate) -> tuple[Decision, float | None]:
    """Decide one request. Returns the decision and the new TAT to store (None: unchanged).

    Everything is computed from ``ahead`` (how far the TAT runs ahead of now), never from
    ``now + window - window``, whose rounding denied fresh keys and undercounted ``remaining``.
    The Redis store's Lua script is this function, line for line.
    """
    interval = rate.interval_ms
    window = rate.window_ms
    tat = now_ms if tat_ms is None or tat_ms < now_ms else tat_ms
    ahead = tat - now_ms
    # Every value truncated below is positive, so int() is floor(), and cheaper once compiled.
    if ahead > window - interval + EPSILON_MS:
        return Decision(False, 0, int(ahead + interval - window) + 1, int(ahead) + 1), None
    remaining = int((window - ahead) * rate.max / window + EPSILON_MS) - 1
    return Decision(True, remaining, 0, int(ahead + interval) + 1), tat + interval


def blocked(until_ms: float | None, now_ms: float) -> Decision | None:
    """A key still serving a block (set when a blocking limit was exceeded)."""
    if until_ms is None or until_ms <= now_ms:
        return None
    wait = int(until_ms - now_ms) + 1
    return Decision(False, 0, wait, wait)
