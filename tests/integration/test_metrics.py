"""GET /metrics: the gateway's own Prometheus metrics, one scrape covering every worker."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text as scrape
from support.metrics import samples, value
from support.tokens import mint
from support.upstream import Reply

from api_gateway.observability.snapshots import SUFFIX, WRITE_EVERY_S

TOKEN = mint()
SETTLE_TIMEOUT_S = 5.0
POLL_S = 0.2
TICKETS = 'route="/api/v1/tickets",service="ticket",method="GET"'
TICKETS_OK = f'{TICKETS},code="200",status_class="2xx"'


def test_requests_upstream_attempts_and_limits_are_counted(
    gateway: GatewayProcess, services: Fleet
) -> None:
    before = scrape(gateway)
    for _ in range(3):
        assert gateway.get("/api/v1/tickets/1", token=TOKEN).status == 200
    assert gateway.get("/api/v1/tickets/1").status == 401
    after = scrape(gateway)

    requests = f"gateway_requests_total{{{TICKETS_OK}}}"
    assert value(after, requests) - value(before, requests) == 3
    client_errors = f'{TICKETS},code="401",status_class="4xx"'
    assert value(after, f"gateway_requests_total{{{client_errors}}}") >= 1
    count = f'gateway_request_duration_seconds_count{{{TICKETS},status_class="2xx"}}'
    assert value(after, count) - value(before, count) == 3
    instance = services["ticket"].url.removeprefix("http://")
    attempts = f'gateway_upstream_attempts_total{{service="ticket",instance="{instance}"}}'
    assert value(after, attempts) - value(before, attempts) == 3
    assert (
        f'gateway_upstream_attempt_duration_seconds_bucket{{service="ticket",instance="{instance}",le="+Inf"}}'
        in after
    )
    allowed = 'gateway_ratelimit_decisions_total{limit="global",decision="allowed"}'
    assert value(after, allowed) - value(before, allowed) >= 4
    # Gauges are per worker (one here, slot 0): the supervisor runs every gateway.
    assert 'gateway_circuit_state{service="ticket",worker="0"} 0' in after
    assert 'gateway_circuit_transitions_total{service="ticket",to="open"} 0' in after
    assert 'gateway_requests_in_flight{worker="0"} 0' in after  # not the admin scrape
    assert re.search(
        r'^gateway_event_loop_lag_seconds\{worker="0"\} [0-9.e-]+$', after, re.MULTILINE
    )


def test_labels_are_route_templates_never_raw_paths(gateway: GatewayProcess) -> None:
    for n in range(5):
        gateway.get(f"/api/v1/tickets/{n}-unique-{time.monotonic_ns()}", token=TOKEN)
    gateway.get(f"/no/such/path/{time.monotonic_ns()}")
    text = scrape(gateway)
    assert "unique" not in text and "/no/such" not in text
    assert 'route="unmatched",service="gateway"' in text


def test_a_service_metrics_path_still_goes_to_the_service(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/tickets/metrics")
    assert response.status == 200
    assert services["ticket"].requests[-1].path == "/api/v1/tickets/metrics"
    assert b"gateway_requests_total" not in response.body


def test_retries_and_breaker_events_are_counted(gateway: GatewayProcess, services: Fleet) -> None:
    before = scrape(gateway)
    services["event"].respond(Reply(status=503))
    assert gateway.get("/api/v1/events/1", token=TOKEN).status == 503
    after = scrape(gateway)
    retries = 'gateway_upstream_retries_total{service="event"}'
    assert value(after, retries) - value(before, retries) == 1
    failures = 'gateway_upstream_events_total{service="event",event="failure"}'
    assert value(after, failures) - value(before, failures) == 1
    errors = 'route="/api/v1/events",service="event",method="GET",code="503",status_class="5xx"'
    assert value(after, f"gateway_requests_total{{{errors}}}") >= 1


@pytest.fixture
def two_workers(service_fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", "2"]) as gateway:
        yield gateway


def test_one_scrape_shows_the_requests_of_every_worker(two_workers: GatewayProcess) -> None:
    requests = 40
    for _ in range(requests):  # a fresh connection each: the kernel spreads them over workers
        assert two_workers.get("/api/v1/tickets/1", token=TOKEN).status == 200
    series = f"gateway_requests_total{{{TICKETS_OK}}}"
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while value(scrape(two_workers), series) != requests:
        assert time.monotonic() < deadline, scrape(two_workers)
        time.sleep(POLL_S)
    # The first full count may be a worker's own live figures plus the other's snapshot, while
    # its own snapshot, which the other worker reads, is up to WRITE_EVERY_S old: wait until
    # both snapshots were written after the traffic, then no scrape may show less.
    time.sleep(WRITE_EVERY_S * 2)
    scrapes = [scrape(two_workers) for _ in range(10)]
    assert [value(text, series) for text in scrapes] == [requests] * 10
    workers = set(re.findall(r'gateway_requests_in_flight\{worker="(\d+)"\}', scrapes[-1]))
    assert workers == {"0", "1"}


def test_body_bytes_are_counted_by_route(gateway: GatewayProcess, services: Fleet) -> None:
    before = scrape(gateway)
    answers = [gateway.get("/api/v1/tickets/1", token=TOKEN) for _ in range(3)]
    sent = b'{"seats":' + b"1" * 500 + b"}"
    put = gateway.request("PUT", "/api/v1/tickets/1", token=TOKEN, body=sent)
    after = scrape(gateway)

    def moved(text: str, name: str, method: str) -> float:
        route = 'route="/api/v1/tickets",service="ticket"'
        return value(text, f'{name}{{{route},method="{method}"}}')

    out = "gateway_response_body_bytes_total"
    assert moved(after, out, "GET") - moved(before, out, "GET") == sum(len(a.body) for a in answers)
    assert moved(after, out, "PUT") - moved(before, out, "PUT") == len(put.body)
    received = "gateway_request_body_bytes_total"
    assert moved(after, received, "PUT") - moved(before, received, "PUT") == len(sent)
    assert moved(after, received, "GET") == moved(before, received, "GET")


def test_open_connections_instances_build_process_and_reloads(
    gateway: GatewayProcess, services: Fleet
) -> None:
    held = [RawConnection(gateway.port) for _ in range(3)]
    try:
        for connection in held:
            connection.send(build_request("GET", "/live"))
            assert connection.read_response().status == 200
        text = scrape(gateway)
    finally:
        for connection in held:
            connection.close()
    # These three (the scrape's own is the admin listener's, not a client connection).
    assert value(text, 'gateway_open_connections{worker="0"}') >= 3
    instance = services["ticket"].url.removeprefix("http://")
    labels = f'{{service="ticket",instance="{instance}",worker="0"}}'
    assert value(text, f"gateway_upstream_instance_healthy{labels}") == 1
    assert f"gateway_upstream_instance_ejected{labels} 0" in text
    (build,) = samples(text, "gateway_build_info")
    assert 'version="' in build and 'python="CPython ' in build and 'compiled="' in build
    worker = '{worker="0"}'
    assert value(text, f"process_resident_memory_bytes{worker}") > 1_000_000
    assert value(text, f"process_open_fds{worker}") >= 4
    assert time.time() - 3600 < value(text, f"process_start_time_seconds{worker}") <= time.time()
    assert value(text, f"process_cpu_seconds_total{worker}") > 0
    # No reload yet: zeros, present all the same (the alert rules name them).
    assert 'gateway_config_reloads_total{result="ok"} 0' in text
    assert 'gateway_config_reloads_total{result="error"} 0' in text
    assert "gateway_config_last_reload_success_timestamp_seconds 0" in text

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while value(scrape(gateway), 'gateway_open_connections{worker="0"}') != 0:
        assert time.monotonic() < deadline, "closed connections are still counted"
        time.sleep(POLL_S)


def metrics_directory(gateway: GatewayProcess) -> Path:
    """The supervisor's private directory (``API_GATEWAY_METRICS_DIR``, set after the exec, so
    not in /proc's environment): where a worker's snapshot is, once it wrote its first."""
    workers = gateway.workers()
    assert len(workers) == 2
    snapshot = f"{workers[0].pid}{SUFFIX}"
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        found = list(Path(tempfile.gettempdir()).glob(f"api-gateway-*/{snapshot}"))
        if found:
            return found[0].parent
        assert time.monotonic() < deadline, f"no {snapshot} in the temporary directory"
        time.sleep(POLL_S)


def test_reload_counts_come_from_the_supervisors_status_file(two_workers: GatewayProcess) -> None:
    directory = metrics_directory(two_workers)
    status = {
        "generation": 3,
        "ok": 2,
        "error": 1,
        "last_error": "routes./x.service: unknown service",
        "last_attempt_unix": 1_800_000_100.5,
        "last_success_unix": 1_800_000_000.25,
    }
    (directory / "reload.json.tmp").write_text(json.dumps(status))
    (directory / "reload.json.tmp").rename(directory / "reload.json")
    text = scrape(two_workers)
    # Once for the gateway, not once per worker.
    assert 'gateway_config_reloads_total{result="ok"} 2' in text
    assert 'gateway_config_reloads_total{result="error"} 1' in text
    assert "gateway_config_last_reload_success_timestamp_seconds 1800000000.25" in text
    assert "unknown service" not in text
