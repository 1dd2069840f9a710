"""Workers: several processes share the port, and a worker that dies is replaced."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, launch_gateway, running_gateway
from support.upstream import Reply

WORKERS = 2
RESTART_TIMEOUT_S = 10.0
POLL_S = 0.1
SHUTDOWN_TIMEOUT_S = 15.0
IN_FLIGHT_DELAY_S = 1.0


def worker_pids(gateway: GatewayProcess) -> set[int]:
    """Children of the gateway that listen on its port."""
    pids = set()
    for child in gateway.children():
        with contextlib.suppress(psutil.Error):
            listening = [
                c for c in child.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == gateway.port
            ]  # fmt: skip
            if listening:
                pids.add(child.pid)
    return pids


def wait_for_workers(gateway: GatewayProcess, count: int, excluding: set[int]) -> set[int]:
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    pids: set[int] = set()
    while time.monotonic() < deadline:
        pids = worker_pids(gateway) - excluding
        if len(pids) >= count:
            return pids
        time.sleep(POLL_S)
    raise AssertionError(f"expected {count} workers, found {pids}:\n{gateway.output()[-3000:]}")


@pytest.fixture
def two_worker_gateway(service_fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(
        tmp_path, service_fleet.urls(), extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        yield gateway


def test_two_workers_share_the_port(two_worker_gateway: GatewayProcess) -> None:
    pids = wait_for_workers(two_worker_gateway, WORKERS, excluding=set())

    assert len(pids) == WORKERS
    statuses = [two_worker_gateway.get("/api/v1/search/q").status for _ in range(10)]
    assert statuses == [200] * 10


def test_a_killed_worker_is_replaced_and_the_gateway_keeps_answering(
    two_worker_gateway: GatewayProcess,
) -> None:
    victim = min(wait_for_workers(two_worker_gateway, WORKERS, excluding=set()))

    os.kill(victim, signal.SIGKILL)

    replacement = wait_for_workers(two_worker_gateway, WORKERS, excluding={victim})
    assert victim not in replacement
    statuses = [two_worker_gateway.get("/api/v1/search/q").status for _ in range(10)]
    assert statuses == [200] * 10
    assert two_worker_gateway.process.poll() is None


def test_stopping_the_supervisor_stops_every_worker(service_fleet: Fleet, tmp_path: Path) -> None:
    gateway = launch_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", str(WORKERS)])
    try:
        gateway.wait_ready()
        workers = [psutil.Process(pid) for pid in wait_for_workers(gateway, WORKERS, set())]

        gateway.process.send_signal(signal.SIGTERM)
        exit_code = gateway.process.wait(SHUTDOWN_TIMEOUT_S)
        _, alive = psutil.wait_procs(workers, timeout=SHUTDOWN_TIMEOUT_S)
    finally:
        gateway.stop()

    assert exit_code == 0
    assert not alive, f"workers outlived the supervisor: {alive}"


def test_workers_do_not_outlive_a_killed_supervisor(service_fleet: Fleet, tmp_path: Path) -> None:
    gateway = launch_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", str(WORKERS)])
    try:
        gateway.wait_ready()
        workers = [psutil.Process(pid) for pid in wait_for_workers(gateway, WORKERS, set())]

        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait(SHUTDOWN_TIMEOUT_S)
        _, alive = psutil.wait_procs(workers, timeout=SHUTDOWN_TIMEOUT_S)
    finally:
        gateway.stop()

    assert not alive, f"workers outlived a killed supervisor: {alive}"


def test_a_request_in_flight_is_finished_during_a_graceful_stop(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["search"]
    gateway = launch_gateway(tmp_path, service_fleet.urls())
    try:
        gateway.wait_ready()
        upstream.reset()
        upstream.respond(Reply(delay_s=IN_FLIGHT_DELAY_S))
        with RawConnection(gateway.port) as connection:
            connection.send(build_request("GET", "/api/v1/search/slow"))
            upstream.wait_for_requests(1)
            gateway.process.send_signal(signal.SIGTERM)
            response = connection.read_response()
        exit_code = gateway.process.wait(SHUTDOWN_TIMEOUT_S)
    finally:
        gateway.stop()

    assert response.status == 200
    assert response.json()["target"] == "/api/v1/search/slow"
    assert exit_code == 0
