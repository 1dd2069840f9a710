"""The demo a new user runs first: its printed token and curl lines work exactly as printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ports import free_port

GATEWAY = Path(sys.executable).parent / "api-gateway"
BANNER_TIMEOUT_S = 15.0
CURL_TIMEOUT_S = 10.0

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the demo prints curl lines")


class Demo:
    def __init__(self, process: subprocess.Popen[str], banner: str) -> None:
        self.process, self.banner = process, banner

    @property
    def token(self) -> str:
        match = re.search(r"TOKEN=(\S+)", self.banner)
        assert match, self.banner
        return match.group(1)

    def curl_lines(self) -> list[str]:
        return [
            line.strip() for line in self.banner.splitlines() if line.strip().startswith("curl")
        ]

    def run(self, line: str) -> str:
        """Run a printed line as a user would paste it, with TOKEN set as printed."""
        env = {**os.environ, "TOKEN": self.token}
        done = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=CURL_TIMEOUT_S
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def read_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("curl -s -i"):  # the last line of the banner
            return "".join(lines)
    raise AssertionError("the demo did not print its banner:\n" + "".join(lines))


def demo_env(admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    return env | {"ADMIN_PORT": str(admin_port)}


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    process = subprocess.Popen(
        [str(GATEWAY), "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(free_port()),
    )
    try:
        yield Demo(process, read_banner(process))
    finally:
        process.terminate()
        process.wait(10)


def test_the_demo_prints_a_token_and_curl_lines(demo: Demo) -> None:
    assert demo.token.count(".") == 2
    assert len(demo.curl_lines()) >= 5


def test_every_printed_line_works_as_printed(demo: Demo) -> None:
    outputs = {line: demo.run(line) for line in demo.curl_lines()}

    for line, output in outputs.items():
        if line.endswith("/health"):
            assert json.loads(output)["status"] == "healthy"
        elif "/aggregate/" in line:
            merged = json.loads(output)
            assert merged["meta"]["complete"] is True, output
            assert merged["data"]["venue"]["path"] == "/api/v1/venues/7"
        elif "400: each field named" in line:
            problem = json.loads(output)
            assert problem["type"].endswith("/validation-failed"), output
            assert {e["field"] for e in problem["errors"]} == {"body.email", "body.password"}
        elif "/venues/1" in line:
            assert output.startswith("HTTP/1.1 401")
            assert "application/problem+json" in output
        else:
            echoed = json.loads(output)
            assert echoed["service"].endswith("-service"), output
            assert echoed["path"].startswith("/api/v1/")


def test_the_demo_token_reaches_the_stub_as_identity_headers(demo: Demo) -> None:
    forged = next(line for line in demo.curl_lines() if "X-Tenant-ID: forged" in line)

    echoed = json.loads(demo.run(forged))

    assert echoed["service"] == "ticket-service"
    assert echoed["headers"]["x-tenant-id"] == "demo-tenant"
    assert echoed["headers"]["x-user-id"] == "demo-user"


def test_the_banner_names_the_status_page_and_it_shows_the_stub_services(demo: Demo) -> None:
    match = re.search(r"Status page and admin API: (http://127\.0\.0\.1:\d+/)", demo.banner)
    assert match, demo.banner

    page = demo.run(f"curl -s {match.group(1)}")
    health = json.loads(demo.run(f"curl -s {match.group(1)}health"))

    assert "<title>api-gateway status</title>" in page
    assert len(health["services"]) == 19 and health["worker_count"] == 1
    instances = [i["instance"] for s in health["services"].values() for i in s["instances"]]
    assert all(instance.startswith("127.0.0.1:") for instance in instances)


def test_a_taken_port_is_one_line_and_exit_1(demo: Demo) -> None:
    """The gateway's port in use: one line naming it (no traceback); the admin port in use: the
    demo runs without its status page and says so."""
    taken = re.search(r"gateway at http://127\.0\.0\.1:(\d+)", demo.banner)
    admin = re.search(r"http://127\.0\.0\.1:(\d+)/ \(ADMIN_PORT", demo.banner)
    assert taken and admin, demo.banner
    command = [str(GATEWAY), "demo", "--port", taken.group(1)]
    env = demo_env(free_port())

    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)

    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if "running interpreted" not in line]
    assert lines == [
        f"api-gateway: cannot listen on 127.0.0.1:{taken.group(1)}: Address already in use"
        " (--port picks another)"
    ]
    second = subprocess.Popen(
        [str(GATEWAY), "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(int(admin.group(1))),
    )
    try:
        banner = read_banner(second)
    finally:
        second.terminate()
        second.wait(10)
    assert f"no status page: cannot listen on 127.0.0.1:{admin.group(1)}" in banner
    assert "Status page and admin API" not in banner
