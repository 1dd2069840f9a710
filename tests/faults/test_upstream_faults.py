"""Upstream faults injected by a TCP proxy between the gateway and a service: the client gets the
status the README promises, a cut body never looks complete, no dead pooled connection is used,
a POST is never sent twice, and the other services do not notice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import IncompleteResponse, RawConnection, RawResponse, build_request
from support.fault_proxy import FaultProxy, Mode
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import RecordingUpstream, Reply

SERVICE = "marketplace"
PATH = "/api/v1/marketplace/offers"  # no body schema: any body reaches the fault
TIMEOUT_MS = 800
LATENCY_S = 0.3
BIG_BODY = 1_000_000  # streamed by the gateway, not buffered
STALLED_CLIENTS = 20
QUICK_S = 0.5
STORM_RESET_MS = 500
# Never opened by the faults below: each test must see the fault itself, not a circuit.
NO_BREAKER = {"volume_threshold": 100_000}


@pytest.fixture(scope="module")
def proxy(service_fleet: Fleet) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(service_fleet[SERVICE].port).start()
    yield fault_proxy
    fault_proxy.stop()


@pytest.fixture(scope="module")
def gateway(service_fleet: Fleet, proxy: FaultProxy, module_dir: Path) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "services": {
            SERVICE: {"timeout_ms": TIMEOUT_MS, "circuit_breaker": NO_BREAKER},
            "queue": {
                "circuit_breaker": {"volume_threshold": 5, "reset_timeout_ms": STORM_RESET_MS},
            },
        }
    }
    urls = {**service_fleet.urls(), SERVICE: proxy.url}
    with running_gateway(module_dir, urls, config) as process:
        yield process


@pytest.fixture
def upstream(services: Fleet, proxy: FaultProxy) -> Iterator[RecordingUpstream]:
    proxy.set(Mode.PASS)
    if proxy.killed:
        proxy.restart()
    yield services[SERVICE]
    proxy.set(Mode.PASS)


def call(gateway: GatewayProcess, method: str = "GET", body: bytes | None = None) -> RawResponse:
    return gateway.request(method, PATH, body=body, token=mint())


def test_latency_below_the_timeout_is_only_slower(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream
) -> None:
    proxy.set(Mode.LATENCY, latency_s=LATENCY_S)
    started = time.monotonic()

    response = call(gateway)

    assert response.status == 200
    assert time.monotonic() - started >= LATENCY_S


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_stalled_upstream_gives_504_and_a_post_arrives_once(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream, method: str
) -> None:
    proxy.set(Mode.STALL)
    started = time.monotonic()

    response = call(gateway, method, b'{"n": 1}' if method == "POST" else None)

    assert_problem(response, 504)
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + 1.0
    if method == "POST":
        assert len(upstream.wait_for_requests(2, timeout_s=0.5)) == 1


@pytest.mark.parametrize("after_bytes", [0, 10])
def test_a_reset_gives_502_and_a_post_is_never_sent_twice(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream, after_bytes: int
) -> None:
    proxy.set(Mode.RESET, after_bytes=after_bytes)

    response = call(gateway, "POST", b'{"buy": 1}')

    assert_problem(response, 502)
    assert len(upstream.wait_for_requests(2, timeout_s=0.5)) == 1


def test_garbage_instead_of_http_gives_502(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream
) -> None:
    proxy.set(Mode.GARBAGE)

    assert_problem(call(gateway), 502)


def test_a_small_body_cut_midway_gives_502(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream
) -> None:
    upstream.respond(Reply(body=b"x" * 1000))
    proxy.set(Mode.CLOSE_MID_BODY, after_bytes=100)

    assert_problem(call(gateway), 502)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("mode", [Mode.CLOSE_MID_BODY, Mode.RESET])
def test_a_streamed_body_cut_midway_aborts_the_client_connection(
    gateway: GatewayProcess,
    proxy: FaultProxy,
    upstream: RecordingUpstream,
    mode: Mode,
    chunked: bool,
) -> None:
    upstream.respond(Reply(generated_size=BIG_BODY, chunked=chunked))
    proxy.set(mode, after_bytes=BIG_BODY // 2)
    request = build_request("GET", PATH, [("Authorization", f"Bearer {mint()}")])

    with RawConnection(gateway.port) as connection:
        connection.send(request)
        with pytest.raises(IncompleteResponse):
            connection.read_response()
        assert connection.is_closed_by_peer(2.0)


@pytest.mark.parametrize("mode", [Mode.RESET, Mode.CLOSE_MID_BODY, Mode.GARBAGE])
def test_no_broken_connection_is_reused(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream, mode: Mode
) -> None:
    upstream.respond(Reply(body=b"y" * 1000))
    assert call(gateway).status == 200
    proxy.set(mode, after_bytes=50)
    assert call(gateway).status == 502
    proxy.set(Mode.PASS)

    # A POST is not retried on a dead connection: it would fail if one were taken from the pool.
    statuses = [call(gateway, "POST", b"{}").status for _ in range(5)]

    assert statuses == [200] * 5


def test_a_killed_upstream_gives_502_and_is_used_again_once_back(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream
) -> None:
    assert call(gateway).status == 200  # a pooled connection now exists
    proxy.kill()

    down = call(gateway, "POST", b"{}")
    proxy.restart()
    back = [call(gateway, "POST", b"{}").status for _ in range(5)]

    assert_problem(down, 502)
    assert back == [200] * 5


def test_a_hanging_service_leaves_the_others_quick(
    gateway: GatewayProcess, proxy: FaultProxy, upstream: RecordingUpstream
) -> None:
    proxy.set(Mode.STALL)
    stalled: list[int] = []
    threads = [
        threading.Thread(target=lambda: stalled.append(call(gateway).status))
        for _ in range(STALLED_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    upstream.wait_for_requests(STALLED_CLIENTS, timeout_s=2.0)

    timings = []
    for _ in range(10):
        started = time.monotonic()
        other = gateway.get("/api/v1/analytics/report", token=mint())
        timings.append(time.monotonic() - started)
        assert other.status == 200
    for thread in threads:
        thread.join(5)

    assert max(timings) < QUICK_S, timings
    assert stalled == [504] * STALLED_CLIENTS


def test_a_5xx_storm_opens_the_circuit_and_it_closes_after(
    gateway: GatewayProcess, services: Fleet
) -> None:
    queue = services["queue"]
    queue.respond(Reply(status=503))

    storm = [gateway.get("/api/v1/queue/1", token=mint()) for _ in range(12)]
    queue.respond(Reply())
    time.sleep(STORM_RESET_MS / 1000 + 0.2)
    after = [gateway.get("/api/v1/queue/1", token=mint()).status for _ in range(3)]

    assert {r.status for r in storm} == {503}
    assert_problem(storm[-1], 503)  # the gateway's own circuit-open answer, not the service's
    assert storm[-1].header("retry-after") is not None
    assert after == [200] * 3
