"""Metric families: per-request counting, merging across workers, Prometheus text."""

from __future__ import annotations

import asyncio
import marshal
import os
from pathlib import Path

import pytest

from api_gateway.observability.exposition import (
    BUCKETS,
    COUNTER,
    GAUGE,
    Family,
    merge,
    render,
)
from api_gateway.observability.metrics import Metrics
from api_gateway.observability.snapshots import WorkerMetrics

ROUTES = {"/api/v1/events": "event"}


def metric_lines(metrics: Metrics) -> list[str]:
    return render(merge([("0", True, metrics.collect())], False)).decode().splitlines()


def test_requests_count_by_route_service_method_and_status_class() -> None:
    metrics = Metrics(ROUTES)
    for status in (200, 204, 200):
        metrics.observe("/api/v1/events", "GET", status, 0.002)
    metrics.observe("/api/v1/events", "POST", 503, 0.002)
    metrics.observe("/health", "GET", 200, 0.002)
    lines = metric_lines(metrics)
    labels = 'route="/api/v1/events",service="event",method="%s",status_class="%s"'
    assert f"gateway_requests_total{{{labels % ('GET', '2xx')}}} 3" in lines
    assert f"gateway_requests_total{{{labels % ('POST', '5xx')}}} 1" in lines
    own = 'route="/health",service="gateway",method="GET",status_class="2xx"'
    assert f"gateway_requests_total{{{own}}} 1" in lines


def test_the_latency_histogram_is_cumulative_with_inclusive_bounds() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.003, 0.3, 60.0):
        metrics.observe("r", "GET", 200, seconds)
    lines = metric_lines(metrics)
    labels = 'route="r",service="gateway",method="GET",status_class="2xx"'
    bucket = f'gateway_request_duration_seconds_bucket{{{labels},le="%s"}} %d'
    assert bucket % ("0.001", 1) in lines
    assert bucket % ("0.005", 2) in lines
    assert bucket % ("0.25", 2) in lines
    assert bucket % ("0.5", 3) in lines
    assert bucket % ("30.0", 3) in lines
    assert bucket % ("+Inf", 4) in lines
    assert f"gateway_request_duration_seconds_count{{{labels}}} 4" in lines
    assert sum("_bucket{" in line for line in lines) == len(BUCKETS) + 1
    total = next(x for x in lines if x.startswith("gateway_request_duration_seconds_sum"))
    assert float(total.split()[-1]) == pytest.approx(60.304)


def test_merging_sums_counters_and_histograms_and_labels_live_gauges_by_worker() -> None:
    def worker(requests: int, in_flight: int) -> list[Family]:
        return [
            ("hits_total", COUNTER, "Hits.", {(("route", "/a"),): requests}),
            ("in_flight", GAUGE, "Now.", {(): in_flight}),
        ]

    merged = merge(
        [("0", True, worker(3, 1)), ("1", True, worker(4, 2)), ("1", False, worker(5, 9))],
        label_workers=True,
    )
    lines = render(merged).decode().splitlines()
    assert 'hits_total{route="/a"} 12' in lines  # a dead worker's counts stay in the total
    assert 'in_flight{worker="0"} 1' in lines and 'in_flight{worker="1"} 2' in lines
    assert not any(line.endswith(" 9") for line in lines)  # ...but not its gauges
    assert render(merged).endswith(b"\n")


def test_label_values_are_escaped() -> None:
    family: Family = ("x", GAUGE, "X.", {(("limit", 'a"b\\c\nd'),): 1})
    assert 'x{limit="a\\"b\\\\c\\nd"} 1' in render([family]).decode()


def test_workers_see_each_others_snapshots(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        mine = Metrics()
        mine.observe("/a", "GET", 200, 0.01)
        me = WorkerMetrics(mine.collect, loop, str(tmp_path), "0")
        other = Metrics()
        for _ in range(2):
            other.observe("/a", "GET", 200, 0.01)
        # Another worker's file, as it writes it; a dead pid's counts are kept too.
        (tmp_path / f"{os.getppid()}.metrics").write_bytes(marshal.dumps(("1", other.collect())))
        (tmp_path / "junk.metrics").write_bytes(b"not marshal")
        text = render(me.families()).decode()
        me.start()
        me.stop()
    finally:
        loop.close()
    assert 'route="/a",service="gateway",method="GET",status_class="2xx"} 3' in text
    assert (tmp_path / f"{os.getpid()}.metrics").exists()
