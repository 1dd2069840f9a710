"""Reloads under keep-alive load lose nothing: every request sent on a kept-alive connection
while the workers are replaced gets its answer (the old worker answers with Connection: close
and keeps an idle connection open for a moment in case a request is crossing), measured with
wrk and with Python's own persistent connections."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.gateway import Fleet
from support.reloads import ReloadableGateway, reloadable_gateway

WRK = shutil.which("wrk")
WRK_SECONDS = 25
RELOADS = 10
RELOAD_GAP_S = 1.0
PYTHON_RELOADS = 3
CLIENTS = 4
CLIENT_TIMEOUT_S = 10.0
TARGET = "/api/v1/search/q?q=keep-alive"


def socket_errors(output: str) -> dict[str, int]:
    """wrk's ``Socket errors: connect 0, read 0, write 0, timeout 0`` (absent: none)."""
    pattern = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    found = re.search(pattern, output)
    names = ("connect", "read", "write", "timeout")
    return dict(zip(names, (int(n) for n in found.groups()), strict=True)) if found else {}


def wrk_figures(output: str) -> tuple[int, int, float]:
    """Requests completed, non-2xx/3xx answers, and requests per second, from wrk's summary."""
    requests = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert requests is not None and rate is not None, output
    return int(requests.group(1)), int(non_2xx.group(1)) if non_2xx else 0, float(rate.group(1))


def reload_repeatedly(reloadable: ReloadableGateway, count: int) -> list[float]:
    """``count`` reloads, each after the previous one is recorded; how long each took."""
    took = []
    for _ in range(count):
        time.sleep(RELOAD_GAP_S)
        started = time.monotonic()
        status = reloadable.reload()
        assert status.error == 0, status.last_error
        took.append(time.monotonic() - started)
    return took


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (Debian package wrk)")
@pytest.mark.parametrize("workers", [2, 1])
def test_wrk_sees_no_error_during_ten_reloads(
    service_fleet: Fleet, tmp_path: Path, workers: int
) -> None:
    assert WRK is not None
    upstream = service_fleet["search"]
    args = ["--workers", str(workers)]
    with reloadable_gateway(tmp_path, service_fleet.urls(), extra_args=args) as reloadable:
        upstream.reset()
        url = f"http://127.0.0.1:{reloadable.gateway.port}{TARGET}"
        command = [WRK, "-t2", "-c32", f"-d{WRK_SECONDS}s", "--timeout", "5s", "--latency", url]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as wrk:
            started = time.monotonic()
            took = reload_repeatedly(reloadable, RELOADS)
            reloads_done_s = time.monotonic() - started
            output, _ = wrk.communicate(timeout=WRK_SECONDS + 15)
        status = reloadable.status()
        served = len(upstream.requests)

    requests, non_2xx, rate = wrk_figures(output)
    print(f"wrk, {workers} workers, {RELOADS} reloads in {reloads_done_s:.1f} s: {requests} "
          f"requests, {rate:.0f}/s, socket errors {socket_errors(output)}, non-2xx {non_2xx}, "
          f"reloads took {', '.join(f'{t:.2f}' for t in took)} s")  # fmt: skip
    assert reloads_done_s < WRK_SECONDS, "the reloads did not all happen under load"
    assert (status.generation, status.ok) == (RELOADS, RELOADS)
    assert socket_errors(output) == {}, output
    assert non_2xx == 0, output
    assert served >= requests > 0


class KeepAliveClient(threading.Thread):
    """GETs one after another on one persistent connection (reopened only when the gateway
    says ``Connection: close``); every outcome counted."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stopping = port, threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.reconnects = 0

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        while not self.stopping.is_set():
            try:
                connection.request("GET", TARGET)
                response = connection.getresponse()
                response.read()
                self.outcomes[str(response.status)] += 1
                if response.will_close:
                    self.reconnects += 1  # the next request opens a new connection
            except (OSError, http.client.HTTPException) as exc:
                self.outcomes[f"failed: {type(exc).__name__}"] += 1
                connection.close()
        connection.close()


def test_persistent_connections_lose_no_request_across_three_reloads(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["search"]
    with reloadable_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", "2"]) as gw:
        upstream.reset()
        clients = [KeepAliveClient(gw.gateway.port) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        reload_repeatedly(gw, PYTHON_RELOADS)
        time.sleep(RELOAD_GAP_S)
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(CLIENT_TIMEOUT_S * 2)
        served = len(upstream.requests)

    outcomes: Counter[str] = Counter()
    for client in clients:
        outcomes += client.outcomes
    reconnects = sum(client.reconnects for client in clients)
    assert set(outcomes) == {"200"}, outcomes
    assert reconnects >= CLIENTS, "the replaced workers never said Connection: close"
    assert served >= outcomes["200"]
