"""Metric families as plain data, summed across workers and rendered as Prometheus text.

A family is ``(name, kind, help, samples)`` with samples keyed by a tuple of label pairs: a
number for counters and gauges, ``[bucket counts..., sum]`` for histograms. Plain tuples,
dicts and lists, so a worker's whole snapshot goes through ``marshal`` as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

COUNTER: Final = "counter"
GAUGE: Final = "gauge"
HISTOGRAM: Final = "histogram"
# Upper bounds (seconds) of every latency histogram's buckets; +Inf follows. From 0.25 ms: most
# requests the gateway answers take less than a millisecond. Of any length to mypyc: a
# fixed-length tuple read from another module is unboxed and boxed anew, 16 floats a request
# (COMPILED.md §2).
BUCKETS: Final[tuple[float, ...]] = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
)  # fmt: skip
BUCKETS_MS: Final = tuple([bound * 1000 for bound in BUCKETS])
CONTENT_TYPE = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")

Labels = tuple[tuple[str, str], ...]
Family = tuple[str, str, str, dict[Labels, Any]]
# One worker's part of a scrape: its label, whether it is alive, its families.
WorkerPart = tuple[str, bool, list[Family]]
# Counters about one process, kept apart per worker (labelled, not summed): a replaced worker's
# last count and its successor's, under the same worker label, still add up to a count that
# never goes back.
PER_WORKER_COUNTERS: Final = frozenset({"process_cpu_seconds_total"})


class Histogram:
    """Bucket counts (the last one is +Inf) and the sum of what was observed."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def sample(self, scale: float = 1.0) -> list[float]:
        return [*self.counts, self.sum * scale]


def merge(parts: Iterable[WorkerPart], label_workers: bool) -> list[Family]:
    """Counters and histograms summed over every worker (a dead one's last counts included,
    so totals never go back); gauges only from live workers, each with its ``worker`` label,
    as are the ``PER_WORKER_COUNTERS``."""
    merged: dict[str, Family] = {}
    for worker, live, families in parts:
        for name, kind, text, samples in families:
            if kind == GAUGE and not live:
                continue
            if label_workers and (kind == GAUGE or name in PER_WORKER_COUNTERS):
                samples = {(*labels, ("worker", worker)): v for labels, v in samples.items()}
            into = merged.setdefault(name, (name, kind, text, {}))[3]
            for labels, value in samples.items():
                current = into.get(labels)
                if current is None:
                    into[labels] = list(value) if kind == HISTOGRAM else value
                elif kind == HISTOGRAM:
                    into[labels] = [a + b for a, b in zip(current, value, strict=True)]
                else:
                    into[labels] = current + value
    return list(merged.values())


def render(families: Iterable[Family]) -> bytes:
    lines: list[str] = []
    for name, kind, text, samples in families:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in sorted(samples.items()):
            if kind == HISTOGRAM:
                lines += _histogram(name, labels, value)
            else:
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()


def _histogram(name: str, labels: Labels, value: list[float]) -> list[str]:
    lines = []
    cumulative = 0.0
    for bound, count in zip((*BUCKETS, "+Inf"), value[:-1], strict=True):
        cumulative += count
        le = _labels((*labels, ("le", str(bound))))
        lines.append(f"{name}_bucket{le} {_number(cumulative)}")
    lines.append(f"{name}_sum{_labels(labels)} {_number(value[-1])}")
    lines.append(f"{name}_count{_labels(labels)} {_number(cumulative)}")
    return lines


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
