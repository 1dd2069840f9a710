"""Stops and restarts under load: SIGTERM lets everything in flight finish (long requests and
streams among steady traffic), and SIGHUP replaces the workers one at a time without a single
failed request. A worker killed with SIGKILL is replaced: tests/integration/test_workers.py."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
from support.client import IncompleteResponse, RawConnection, build_request, http_request
from support.gateway import Fleet, GatewayProcess, launch_gateway
from support.patterns import pattern_sha256
from support.upstream import Reply

WORKERS = 2
LOAD_THREADS = 4
SLOW_S = 1.5
SLOW_REQUESTS = 4
DOWNLOAD_BYTES = 16 * 1024 * 1024
ROLL_TIMEOUT_S = 30.0
EXIT_BOUND_S = 15.0
POLL_S = 0.1


@contextlib.contextmanager
def gateway_with_workers(fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = launch_gateway(tmp_path, fleet.urls(), extra_args=["--workers", str(WORKERS)])
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


class Load(threading.Thread):
    """GETs one after another on new connections; outcomes counted by kind."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stopping = port, threading.Event()
        self.outcomes: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.outcomes[self._one()] += 1

    def _one(self) -> str:
        try:
            status = http_request(self.port, "GET", "/api/v1/search/q?q=load").status
        except ConnectionRefusedError:
            return "refused"
        except IncompleteResponse as exc:
            # Queued by the kernel but never accepted when the listener closed: reset unanswered.
            return "unaccepted" if "before a response head: b''" in str(exc) else f"broken: {exc}"
        except ConnectionResetError:
            return "unaccepted"
        except OSError as exc:
            return f"broken: {type(exc).__name__}"
        return str(status)

    def stop(self) -> Counter[str]:
        self.stopping.set()
        self.join(10)
        return self.outcomes


def start_load(port: int) -> list[Load]:
    loads = [Load(port) for _ in range(LOAD_THREADS)]
    for load in loads:
        load.start()
    return loads


def totals(loads: list[Load]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for load in loads:
        outcomes += load.stop()
    return outcomes


def slow_requests(gateway: GatewayProcess, statuses: list[int]) -> list[threading.Thread]:
    def one() -> None:
        statuses.append(gateway.get("/api/v1/search/slow").status)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(SLOW_REQUESTS)]
    for thread in threads:
        thread.start()
    return threads


def workers(gateway: GatewayProcess) -> set[int]:
    pids = set()
    for child in gateway.workers():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
    return pids


def test_a_rolling_restart_under_load_fails_no_request(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["search"]
    upstream.reset()
    upstream.respond(Reply(delay_s=SLOW_S), path="/api/v1/search/slow")
    slow: list[int] = []
    with gateway_with_workers(service_fleet, tmp_path) as gateway:
        old = workers(gateway)
        loads = start_load(gateway.port)
        time.sleep(0.5)
        threads = slow_requests(gateway, slow)
        upstream.wait_for_requests(SLOW_REQUESTS, timeout_s=5)

        gateway.process.send_signal(signal.SIGHUP)

        deadline = time.monotonic() + ROLL_TIMEOUT_S
        while (workers(gateway) & old or len(workers(gateway)) != WORKERS) and (
            time.monotonic() < deadline
        ):
            time.sleep(POLL_S)
        time.sleep(0.5)
        outcomes = totals(loads)
        for thread in threads:
            thread.join(10)
        new = workers(gateway)

    assert not new & old and len(new) == WORKERS, (old, new, gateway.output()[-3000:])
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 50
    assert slow == [200] * SLOW_REQUESTS


def test_sigterm_under_load_finishes_long_requests_and_streams(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    search, files = service_fleet["search"], service_fleet["file"]
    search.reset()
    files.reset()
    search.respond(Reply(delay_s=SLOW_S), path="/api/v1/search/slow")
    files.respond(Reply(generated_size=DOWNLOAD_BYTES, chunked=True))
    slow: list[int] = []
    digest, received = hashlib.sha256(), 0
    with gateway_with_workers(service_fleet, tmp_path) as gateway:
        loads = start_load(gateway.port)
        time.sleep(0.5)
        threads = slow_requests(gateway, slow)
        search.wait_for_requests(SLOW_REQUESTS, timeout_s=5)

        def sink(piece: bytes) -> None:
            nonlocal received
            if received == 0:
                gateway.process.send_signal(signal.SIGTERM)
                time.sleep(0.3)  # the body is still on its way while the workers drain
            received += len(piece)
            digest.update(piece)

        with RawConnection(gateway.port) as connection:
            connection.send(build_request("GET", "/api/v1/files/health"))
            download = connection.stream_response(sink)
        for thread in threads:
            thread.join(10)
        exit_code = gateway.process.wait(EXIT_BOUND_S)
        outcomes = totals(loads)

    assert slow == [200] * SLOW_REQUESTS
    assert download.status == 200 and received == DOWNLOAD_BYTES
    assert digest.hexdigest() == pattern_sha256(DOWNLOAD_BYTES)
    assert exit_code == 0
    # Once the drain begins new connections are refused; the ones the kernel had queued are
    # accepted and answered before the listeners close (README: Shutdown); no answer is cut.
    assert outcomes["200"] > 20
    assert not [kind for kind in outcomes if kind not in ("200", "refused")], outcomes
