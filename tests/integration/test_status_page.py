"""The admin listener's status page in headless Chromium: after traffic through a gateway of two
workers, its DOM shows every route and service with the figures /health gives (merged over both
workers), and its screenshot is a non-blank PNG.

``STATUS_PAGE_SCREENSHOT=<path>`` keeps the screenshot there too; ``tools/status_page.sh``
saves it as ``bench/results/status-page.png``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint

from api_gateway.operations import WRITE_EVERY_S

CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT_S = 60
# Time the page's script gets (virtual time: no real waiting) to fetch /health and draw it.
SCRIPT_BUDGET_MS = "4000"
SETTLE_TIMEOUT_S = 10.0
TRAFFIC_ROUTES = ("/api/v1/search", "/api/v1/tickets")

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="headless Chromium (/usr/bin/chromium, Debian's chromium package) is not installed",
)


def browser(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={cwd / 'profile'}", f"--virtual-time-budget={SCRIPT_BUDGET_MS}",
        *arguments,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=BROWSER_TIMEOUT_S, cwd=cwd)


class Cells(HTMLParser):
    """Every element's data-* attributes, by row: routes, services, instances, workers."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, dict[str, str]] = {}
        self.services: set[str] = set()
        self.instances: set[str] = set()
        self.row: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "tr":
            self.row = found
            if "data-route" in found:
                self.routes[found["data-route"]] = {}
            if "data-service" in found:
                self.services.add(found["data-service"])
            if "data-instance" in found:
                self.instances.add(found["data-instance"])
        if tag == "td" and "data-field" in found and "data-route" in self.row:
            self.routes[self.row["data-route"]][found["data-field"]] = found.get("data-value", "")


def png_is_not_blank(path: Path) -> bool:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    pixels = zlib.decompress(idat)
    return len(set(pixels[:1_000_000])) > 8  # a blank page is one colour (and filter bytes)


def settled_health(gateway: GatewayProcess, workers: int, requests: int) -> dict[str, Any]:
    """/health once the merged figures no longer move: every worker's state document holds its
    share of the traffic, and a whole write period later (each worker writes its own every
    ``WRITE_EVERY_S``) every route still counts the same. The traffic routes reaching their
    counts is not enough: the readiness probe's ``/live`` may sit in a worker that served no
    traffic and has not written since."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    seen: dict[str, int] | None = None
    while True:
        health: dict[str, Any] = gateway.admin_get("/health").json()
        counts = {route: figures["requests"] for route, figures in health["routes"].items()}
        traffic = [counts.get(route, 0) for route in TRAFFIC_ROUTES]
        if len(health["workers"]) == workers and traffic == [requests] * len(TRAFFIC_ROUTES):
            if counts == seen:
                return health
            seen = counts
        assert time.monotonic() < deadline, health
        time.sleep(WRITE_EVERY_S + 0.2 if seen is not None else 0.2)


def test_the_status_page_shows_what_health_says(service_fleet: Fleet, tmp_path: Path) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", "2"]) as gateway:
        gateway.wait_all_workers()
        for _ in range(5):  # new connections: the kernel spreads them over both workers
            assert gateway.get("/api/v1/search/q").status == 200
            assert gateway.get("/api/v1/tickets/1", token=mint()).status == 200
        url = f"http://127.0.0.1:{gateway.admin_port}/"
        before = settled_health(gateway, workers=2, requests=5)
        dom = browser("--dump-dom", url, cwd=tmp_path)
        screenshot = tmp_path / "status-page.png"
        shot = browser(f"--screenshot={screenshot}", "--window-size=1366,900", url, cwd=tmp_path)
        after = gateway.admin_get("/health").json()

    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    page = dom.stdout.decode()
    assert 'data-loaded="true"' in page, page[-3000:]
    cells = Cells()
    cells.feed(page)
    assert set(cells.routes) == set(after["routes"]) and "/api/v1/search" in cells.routes
    assert cells.services == set(after["services"])
    shown_instances = {i["instance"] for s in after["services"].values() for i in s["instances"]}
    assert cells.instances == shown_instances
    for route, figures in cells.routes.items():
        # Only the admin requests moved between the two /health calls: none is a route's.
        assert int(figures["requests"]) == before["routes"][route]["requests"]
        assert float(figures["error_ratio"]) == after["routes"][route]["error_ratio"]
        p99 = after["routes"][route]["p99_ms"]
        if p99 is None:
            assert figures["p99_ms"] == ""
        else:
            assert float(figures["p99_ms"]) == pytest.approx(p99)
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    assert screenshot.stat().st_size > 10_000 and png_is_not_blank(screenshot)
    keep = os.environ.get("STATUS_PAGE_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, keep)
