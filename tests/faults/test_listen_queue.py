"""SIGTERM while the kernel holds a burst of connections in the listen queue, their requests
sent: each one is accepted and answered (with Connection: close), none is reset.

The workers are frozen (SIGSTOP) while the burst arrives, so that every connection of it waits
in the queue, unaccepted, when the stop signal is handled: the worst case, made deterministic.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import IncompleteResponse, RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, launch_gateway

BURST = 500
EXIT_BOUND_S = 20.0
READ_TIMEOUT_S = 20.0
SIGNAL_BOUND_S = 10.0
POLL_S = 0.01
# The first-request grace (1 s) plus the once-a-second sweep, with room for a busy machine.
SILENT_BOUND_S = 5.0


@contextlib.contextmanager
def stopping_gateway(fleet: Fleet, tmp_path: Path, workers: int) -> Iterator[GatewayProcess]:
    gateway = launch_gateway(tmp_path, fleet.urls(), extra_args=["--workers", str(workers)])
    try:
        gateway.wait_ready()
        gateway.wait_all_workers()
        yield gateway
    finally:
        gateway.stop()


def worker_pids(gateway: GatewayProcess, workers: int) -> list[int]:
    """The workers (one included: every gateway runs under its supervisor)."""
    pids = [child.pid for child in gateway.workers()]
    assert len(pids) == workers
    return pids


def freeze(pid: int) -> None:
    """SIGSTOP, and wait until every thread of the process is stopped. Until then a signal sent
    next may be taken first (the kernel hands out the lowest-numbered pending signal first, and
    SIGTERM is below SIGSTOP): its handler would be entered, not left pending."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + SIGNAL_BOUND_S
    while time.monotonic() < deadline:
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
        if all(state == "T" for state in states):
            return
        time.sleep(POLL_S)
    raise AssertionError(f"worker {pid} did not stop")


def wait_for_pending_sigterm(pid: int) -> None:
    """Until the frozen worker has SIGTERM pending: handled first thing when it resumes."""
    bit = 1 << (signal.SIGTERM - 1)
    deadline = time.monotonic() + SIGNAL_BOUND_S
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        pending = [line.split()[1] for line in status.splitlines() if "Pnd:" in line]
        if any(int(mask, 16) & bit for mask in pending):
            return
        time.sleep(POLL_S)
    raise AssertionError(f"worker {pid} never got SIGTERM")


def outcome(connection: RawConnection) -> str:
    """What the client saw: the status, or how the connection failed."""
    try:
        response: RawResponse = connection.read_response()
    except (OSError, IncompleteResponse) as exc:
        return type(exc).__name__  # a reset reads as an IncompleteResponse
    closes = any(v.lower() == "close" for v in response.header_values("connection"))
    return f"{response.status}{'' if closes else ' keep-alive'}"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_connection_waiting_in_the_listen_queue(
    service_fleet: Fleet, tmp_path: Path, workers: int
) -> None:
    upstream = service_fleet["search"]
    with stopping_gateway(service_fleet, tmp_path, workers) as gateway:
        upstream.reset()
        pids = worker_pids(gateway, workers)
        connections: list[RawConnection] = []
        try:
            for pid in pids:
                freeze(pid)
            for i in range(BURST):
                connection = RawConnection(gateway.port, timeout_s=READ_TIMEOUT_S)
                connections.append(connection)
                connection.send(build_request("GET", f"/api/v1/search/queued?n={i}"))
            gateway.process.send_signal(signal.SIGTERM)
            for pid in pids:
                wait_for_pending_sigterm(pid)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        outcomes: dict[str, int] = {}
        for connection in connections:
            seen = outcome(connection)
            outcomes[seen] = outcomes.get(seen, 0) + 1
            connection.close()
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    answered = outcomes.get("200", 0) + outcomes.get("503", 0)
    assert answered == BURST, f"of {BURST} queued connections: {outcomes}"
    assert exit_code == 0


def test_a_queued_connection_that_sends_nothing_does_not_hold_the_stop(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    with stopping_gateway(service_fleet, tmp_path, workers=1) as gateway:
        [worker] = worker_pids(gateway, 1)
        try:
            freeze(worker)
            silent = RawConnection(gateway.port)
            asking = RawConnection(gateway.port)
            asking.send(build_request("GET", "/live"))
            gateway.process.send_signal(signal.SIGTERM)
            wait_for_pending_sigterm(worker)
        finally:
            os.kill(worker, signal.SIGCONT)
        started = time.monotonic()
        with silent, asking:
            answer = outcome(asking)
            closed = silent.is_closed_by_peer(SILENT_BOUND_S)
        exit_code = gateway.process.wait(EXIT_BOUND_S)
        elapsed = time.monotonic() - started

    assert answer == "200"
    assert closed, "a silent queued connection was kept open"
    assert exit_code == 0
    # The header timeout (10 s) would have kept the worker; the first-request grace is 1 s.
    assert elapsed < SILENT_BOUND_S
