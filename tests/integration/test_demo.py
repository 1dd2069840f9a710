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


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    process = subprocess.Popen(
        [str(GATEWAY), "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JWT_SECRET"},
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
