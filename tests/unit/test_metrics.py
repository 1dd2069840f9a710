"""Metric families: per-request counting, merging across workers, Prometheus text."""

from __future__ import annotations

import asyncio
import json
import marshal
import os
from pathlib import Path

import pytest

from api_gateway.observability.exporters import reload_families
from api_gateway.observability.exposition import (
    BUCKETS,
    COUNTER,
    GAUGE,
    Family,
    merge,
    render,
)
from api_gateway.observability.metrics import CODES, Metrics, class_label, code_label, fold
from api_gateway.observability.process import ProcessInfo
from api_gateway.observability.snapshots import WorkerMetrics

ROUTES = {"/api/v1/events": "event"}


def metric_lines(metrics: Metrics) -> list[str]:
    return render(merge([("0", True, metrics.collect())], False)).decode().splitlines()


def test_requests_count_by_route_service_method_code_and_status_class() -> None:
    metrics = Metrics(ROUTES)
    for status in (200, 204, 200):
        metrics.observe("/api/v1/events", "GET", status, 0.002)
    metrics.observe("/api/v1/events", "POST", 503, 0.002)
    metrics.observe("/health", "GET", 200, 0.002)
    lines = metric_lines(metrics)
    labels = 'route="/api/v1/events",service="event",method="%s",code="%s",status_class="%s"'
    assert f"gateway_requests_total{{{labels % ('GET', '200', '2xx')}}} 2" in lines
    assert f"gateway_requests_total{{{labels % ('GET', '204', '2xx')}}} 1" in lines
    assert f"gateway_requests_total{{{labels % ('POST', '503', '5xx')}}} 1" in lines
    own = 'route="/health",service="gateway",method="GET",code="200",status_class="2xx"'
    assert f"gateway_requests_total{{{own}}} 1" in lines
    # Latency by class only: a histogram's buckets multiply every label value.
    by_class = 'route="/api/v1/events",service="event",method="GET",status_class="2xx"'
    assert f"gateway_request_duration_seconds_count{{{by_class}}} 3" in lines


@pytest.mark.parametrize(
    ("status", "code", "status_class"),
    [
        (200, "200", "2xx"),
        (101, "101", "1xx"),
        (308, "308", "3xx"),
        (418, "4xx", "4xx"),  # not in the registry: folded into its class
        (429, "429", "4xx"),
        (451, "451", "4xx"),
        (499, "4xx", "4xx"),
        (511, "511", "5xx"),
        (520, "5xx", "5xx"),
        (599, "5xx", "5xx"),
        (600, "other", "other"),
        (99, "other", "other"),
    ],
)
def test_the_code_label_is_exact_for_known_statuses_and_folded_otherwise(
    status: int, code: str, status_class: str
) -> None:
    assert code_label(fold(status)) == code
    assert class_label(fold(status)) == status_class


def test_the_code_label_stays_bounded_whatever_upstreams_answer() -> None:
    metrics = Metrics()
    for status in range(100, 1000):
        metrics.observe("r", "GET", status, 0.001)
    codes = {
        line.split('code="')[1].split('"')[0]
        for line in metric_lines(metrics)
        if line.startswith("gateway_requests_total{")
    }
    assert len(codes) == len(CODES) + 6  # every named code, five classes and "other"
    assert {"1xx", "2xx", "3xx", "4xx", "5xx", "other"} <= codes
    assert len(metrics.folded) == len(codes)
    total = sum(
        float(line.split()[-1])
        for line in metric_lines(metrics)
        if line.startswith("gateway_requests_total{")
    )
    assert total == 900


def test_body_bytes_are_counted_by_route_and_method() -> None:
    metrics = Metrics(ROUTES)
    metrics.observe("/api/v1/events", "POST", 201, 0.001, 120, 40)
    entry = metrics.observe("/api/v1/events", "POST", 400, 0.001, 7, 300)
    entry.sent += 1000  # a streamed body's bytes, added when it ends
    lines = metric_lines(metrics)
    labels = 'route="/api/v1/events",service="event",method="POST"'
    assert f"gateway_request_body_bytes_total{{{labels}}} 127" in lines
    assert f"gateway_response_body_bytes_total{{{labels}}} 1340" in lines


def test_the_latency_histogram_is_cumulative_with_inclusive_bounds() -> None:
    metrics = Metrics()
    for seconds in (0.0002, 0.001, 0.003, 0.3, 60.0):
        metrics.observe("r", "GET", 200, seconds)
    lines = metric_lines(metrics)
    labels = 'route="r",service="gateway",method="GET",status_class="2xx"'
    bucket = f'gateway_request_duration_seconds_bucket{{{labels},le="%s"}} %d'
    assert BUCKETS[0] == 0.00025
    assert bucket % ("0.00025", 1) in lines
    assert bucket % ("0.0005", 1) in lines
    assert bucket % ("0.001", 2) in lines
    assert bucket % ("0.005", 3) in lines
    assert bucket % ("0.25", 3) in lines
    assert bucket % ("0.5", 4) in lines
    assert bucket % ("30.0", 4) in lines
    assert bucket % ("+Inf", 5) in lines
    assert f"gateway_request_duration_seconds_count{{{labels}}} 5" in lines
    assert sum("_bucket{" in line for line in lines) == len(BUCKETS) + 1
    total = next(x for x in lines if x.startswith("gateway_request_duration_seconds_sum"))
    assert float(total.split()[-1]) == pytest.approx(60.3042)


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


def test_process_counters_are_kept_per_worker_and_never_go_back() -> None:
    def worker(cpu: float) -> list[Family]:
        return [("process_cpu_seconds_total", COUNTER, "CPU.", {(): cpu})]

    # Worker 1 was replaced: its predecessor's last count and its own add up.
    parts = [("0", True, worker(2.5)), ("1", True, worker(1.0)), ("1", False, worker(4.0))]
    lines = render(merge(parts, label_workers=True)).decode().splitlines()
    assert 'process_cpu_seconds_total{worker="0"} 2.5' in lines
    assert 'process_cpu_seconds_total{worker="1"} 5' in lines
    alone = render(merge([("0", True, worker(2.5))], label_workers=False)).decode()
    assert "process_cpu_seconds_total 2.5" in alone.splitlines()


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
    assert 'route="/a",service="gateway",method="GET",code="200",status_class="2xx"} 3' in text
    assert (tmp_path / f"{os.getpid()}.metrics").exists()


def test_reload_counts_are_read_from_the_status_file_and_zero_without_one(tmp_path: Path) -> None:
    def counts() -> list[str]:
        lines = render(reload_families(str(tmp_path))).decode().splitlines()
        return sorted(line for line in lines if not line.startswith("#"))

    zeros = sorted(
        [
            'gateway_config_reloads_total{result="ok"} 0',
            'gateway_config_reloads_total{result="error"} 0',
            "gateway_config_last_reload_success_timestamp_seconds 0",
        ]
    )
    assert counts() == zeros  # no reload attempted yet
    unsupervised = render(reload_families(None)).decode().splitlines()
    assert sorted(line for line in unsupervised if not line.startswith("#")) == zeros
    status = tmp_path / "reload.json"
    status.write_text("{not json")
    assert counts() == zeros  # a scrape never fails over it
    document = {
        "generation": 4,
        "ok": 3,
        "error": 1,
        "last_error": "bad key",
        "last_attempt_unix": 1_800_000_100.0,
        "last_success_unix": 1_800_000_000.5,
    }
    status.write_text(json.dumps(document))
    lines = render(reload_families(str(tmp_path))).decode().splitlines()
    assert 'gateway_config_reloads_total{result="ok"} 3' in lines
    assert 'gateway_config_reloads_total{result="error"} 1' in lines
    assert "gateway_config_last_reload_success_timestamp_seconds 1800000000.5" in lines
    assert "bad key" not in "\n".join(lines)


def test_process_families_use_the_standard_names() -> None:
    families = {name: (kind, samples) for name, kind, _, samples in ProcessInfo(True).families()}
    assert families["process_cpu_seconds_total"][0] == COUNTER
    for gauge in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        kind, samples = families[gauge]
        assert kind == GAUGE and samples[()] > 0
    ((labels, one),) = families["gateway_build_info"][1].items()
    assert one == 1 and dict(labels)["compiled"] == "true"
    assert set(dict(labels)) == {"version", "python", "compiled"}
