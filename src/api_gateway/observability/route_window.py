"""The last minute of each route: request rate, p99 and 5xx ratio, without touching requests.

A pure core with an injected clock. Every ``every_s`` the shell hands it each route's cumulative
totals (requests, 5xx answers, latency bucket counts) read from the counters the request path
keeps anyway; it keeps a short ring of those samples. The last minute is then the difference
between the totals now and the oldest sample within ``span_s``: nothing is done per request.

Each worker publishes its difference (``Delta``); ``merge`` adds the workers' differences and
``figures`` turns the sum into what an operator reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

SPAN_S: Final = 60.0
EVERY_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Totals:
    """A route's cumulative counts since the worker started."""

    requests: int
    errors: int  # answers with a 5xx status
    buckets: tuple[int, ...]  # latency bucket counts, the last one unbounded


@dataclass(frozen=True, slots=True)
class Delta:
    """What a route did over ``seconds``: the counts' growth."""

    requests: int
    errors: int
    buckets: tuple[int, ...]
    seconds: float

    def document(self) -> list[object]:
        return [self.requests, self.errors, list(self.buckets), self.seconds]

    @classmethod
    def parse(cls, value: object) -> Delta | None:
        """A delta as ``document`` wrote it; None for anything else."""
        if not (isinstance(value, list) and len(value) == 4):
            return None
        requests, errors, buckets, seconds = value
        if not (isinstance(requests, int) and isinstance(errors, int)):
            return None
        if not (isinstance(buckets, list) and all(isinstance(b, int) for b in buckets)):
            return None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return None
        return cls(requests, errors, tuple(buckets), float(seconds))


@dataclass(frozen=True, slots=True)
class Figures:
    rate_per_s: float
    p99_ms: float | None  # None: no request in the window
    error_ratio: float
    requests: int

    def document(self) -> dict[str, object]:
        return {
            "rate": round(self.rate_per_s, 3),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "error_ratio": round(self.error_ratio, 4),
            "requests": self.requests,
        }


class RouteWindow:
    def __init__(
        self, clock_s: Callable[[], float], span_s: float = SPAN_S, every_s: float = EVERY_S
    ) -> None:
        self.clock_s, self.span_s, self.every_s = clock_s, span_s, every_s
        self.samples: deque[tuple[float, dict[str, Totals]]] = deque()
        self.started = clock_s()

    def due(self) -> bool:
        return not self.samples or self.clock_s() - self.samples[-1][0] >= self.every_s

    def sample(self, totals: Mapping[str, Totals]) -> None:
        """Keep ``totals`` as of now; forget samples the window no longer needs (the oldest
        kept is the last one at or before the window's start)."""
        now = self.clock_s()
        self.samples.append((now, dict(totals)))
        while len(self.samples) > 1 and now - self.samples[1][0] >= self.span_s:
            self.samples.popleft()

    def deltas(self, totals: Mapping[str, Totals]) -> dict[str, Delta]:
        """Each route's growth from the oldest sample in the window to ``totals`` (now). Before
        a first sample, since start (counts were 0 then)."""
        now = self.clock_s()
        since, before = self.started, {}
        for when, sample in self.samples:
            if now - when <= self.span_s:
                since, before = when, sample
                break
        else:
            if self.samples:  # every sample is older than the window: the newest is closest
                since, before = self.samples[-1]
        seconds = max(now - since, 1e-9)
        result: dict[str, Delta] = {}
        for route, current in totals.items():
            old = before.get(route)
            if old is None:
                old = Totals(0, 0, (0,) * len(current.buckets))
            if len(old.buckets) != len(current.buckets):
                old = Totals(old.requests, old.errors, (0,) * len(current.buckets))
            result[route] = Delta(
                max(current.requests - old.requests, 0),
                max(current.errors - old.errors, 0),
                tuple(max(c - o, 0) for c, o in zip(current.buckets, old.buckets, strict=True)),
                seconds,
            )
        return result


def merge(workers: Iterable[Mapping[str, Delta]]) -> dict[str, tuple[float, Delta]]:
    """The workers' deltas per route, summed; with the summed rate (each over its own span)."""
    merged: dict[str, tuple[float, Delta]] = {}
    for deltas in workers:
        for route, delta in deltas.items():
            rate = delta.requests / delta.seconds if delta.seconds > 0 else 0.0
            seen = merged.get(route)
            if seen is None:
                merged[route] = (rate, delta)
                continue
            old_rate, old = seen
            width = max(len(old.buckets), len(delta.buckets))
            buckets = tuple(
                (old.buckets[i] if i < len(old.buckets) else 0)
                + (delta.buckets[i] if i < len(delta.buckets) else 0)
                for i in range(width)
            )
            merged[route] = (
                old_rate + rate,
                Delta(
                    old.requests + delta.requests,
                    old.errors + delta.errors,
                    buckets,
                    max(old.seconds, delta.seconds),
                ),
            )
    return merged


def figures(rate: float, delta: Delta, bounds_ms: Sequence[float]) -> Figures:
    """Rate, p99 (interpolated within its bucket) and 5xx ratio of one route's window."""
    requests = delta.requests
    if requests == 0:
        return Figures(rate, None, 0.0, 0)
    return Figures(
        rate, quantile(0.99, delta.buckets, bounds_ms), delta.errors / requests, requests
    )


def quantile(q: float, buckets: Sequence[int], bounds_ms: Sequence[float]) -> float | None:
    """The ``q`` quantile of bucket counts (``bounds_ms``: the finite upper bounds; the last
    bucket is unbounded and reported at the last bound)."""
    total = sum(buckets)
    if total == 0:
        return None
    wanted = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= wanted:
            if index >= len(bounds_ms):
                return float(bounds_ms[-1]) if bounds_ms else None
            lower = bounds_ms[index - 1] if index > 0 else 0.0
            upper = bounds_ms[index]
            return lower + (upper - lower) * (wanted - seen) / count
        seen += count
    return float(bounds_ms[-1]) if bounds_ms else None
