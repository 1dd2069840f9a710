"""GET /metrics: the gateway's own Prometheus metrics, one scrape covering every worker."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import Reply

TOKEN = mint()
SETTLE_TIMEOUT_S = 5.0
POLL_S = 0.2
TICKETS_OK = 'route="/api/v1/tickets",service="ticket",method="GET",status_class="2xx"'


def scrape(gateway: GatewayProcess) -> str:
    response = gateway.admin_get("/metrics")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain; version=0.0.4")
    return response.body.decode()


def value(text: str, series: str) -> float:
    """The sample of one series (name and labels exactly as rendered); 0 when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


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
    client_errors = TICKETS_OK.replace("2xx", "4xx")
    assert value(after, f"gateway_requests_total{{{client_errors}}}") >= 1
    count = f"gateway_request_duration_seconds_count{{{TICKETS_OK}}}"
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
    assert 'gateway_circuit_state{service="ticket"} 0' in after
    assert 'gateway_circuit_transitions_total{service="ticket",to="open"} 0' in after
    assert "gateway_requests_in_flight 1" in after  # the scrape itself
    assert re.search(r"^gateway_event_loop_lag_seconds [0-9.e-]+$", after, re.MULTILINE)


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
    errors = 'route="/api/v1/events",service="event",method="GET",status_class="5xx"'
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
    scrapes = [scrape(two_workers) for _ in range(10)]
    assert [value(text, series) for text in scrapes] == [requests] * 10
    workers = set(re.findall(r'gateway_requests_in_flight\{worker="(\d+)"\}', scrapes[-1]))
    assert workers == {"0", "1"}
