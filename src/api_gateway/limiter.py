"""Rate-limit arithmetic: GCRA (the generic cell rate algorithm), pure and clock-free.

One number per key, the theoretical arrival time (TAT), gives an exact "``max`` per
``window``" limit with smooth refill: a full burst of ``max`` is allowed, after which one
request is allowed every ``window / max``. The memory store runs this function; the Redis store
runs the same arithmetic in a Lua script, so both modes decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import floor

from api_gateway.config.settings import LimitConfig

# Clock readings have fractions, so sums of intervals carry rounding error; a nanosecond of
# tolerance keeps a full burst from losing its last request to that error.
EPSILON_MS = 1e-6


@dataclass(slots=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_ms: int  # when denied: how long until one request would be allowed
    reset_ms: int  # how long until the bucket is full again


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
    if ahead > window - interval + EPSILON_MS:
        return Decision(False, 0, floor(ahead + interval - window) + 1, floor(ahead) + 1), None
    remaining = floor((window - ahead) * rate.max / window + EPSILON_MS) - 1
    return Decision(True, remaining, 0, floor(ahead + interval) + 1), tat + interval


def blocked(until_ms: float | None, now_ms: float) -> Decision | None:
    """A key still serving a block (set when a blocking limit was exceeded)."""
    if until_ms is None or until_ms <= now_ms:
        return None
    wait = int(until_ms - now_ms) + 1
    return Decision(False, 0, wait, wait)
