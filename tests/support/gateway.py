"""The real gateway as a subprocess: `api-gateway serve` on a free port, ready once /live is 200."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import yaml

from support.client import (
    IncompleteResponse,
    RawConnection,
    RawResponse,
    build_request,
    http_request,
)
from support.ports import free_port
from support.tokens import JWT_SECRET
from support.upstream import RecordingUpstream

GATEWAY_BINARY = str(Path(sys.executable).parent / "api-gateway")
SERVICE_NAMES = (
    "auth", "venue", "event", "ticket", "payment", "marketplace", "analytics", "notification",
    "integration", "compliance", "queue", "search", "file", "monitoring", "blockchain", "order",
    "minting", "transfer", "scanning",
)  # fmt: skip
READY_TIMEOUT_S = 10.0
KEEPER_NAME = "gateway-keeper"  # supervisor.KEEPER_NAME: the process shared state lives in
STOP_TIMEOUT_S = 8.0
POLL_INTERVAL_S = 0.05
LIVE_PROBE_TIMEOUT_S = 1.0
# Settings a developer's shell might carry that would change what the tests see.
_INHERITED_SETTINGS = (
    "HOST", "PORT", "GATEWAY_WORKERS", "LOG_LEVEL", "JWT_ISSUER", "REDIS_URL", "TRUSTED_PROXIES",
    "CORS_ORIGINS", "RATE_LIMIT_MAX", "RATE_LIMIT_WINDOW_MS", "RATE_LIMIT_USER_MAX",
    "RATE_LIMIT_USER_WINDOW_MS", "REDIS_CLUSTER", "ALLOWED_ORIGINS", "ADMIN_HOST", "ADMIN_PORT",
    "ADMIN_TOKEN", "ADMIN_TOKEN_FILE", "ADMIN_ALLOW",
)  # fmt: skip
# High enough that no test meets the global per-IP limit unless it asks for it.
UNLIMITED_RATE = "1000000"


class Fleet:
    """One recording upstream per backend service, named after it."""

    def __init__(self) -> None:
        self.upstreams = {name: RecordingUpstream(name).start() for name in SERVICE_NAMES}

    def __getitem__(self, name: str) -> RecordingUpstream:
        return self.upstreams[name]

    def urls(self) -> dict[str, str]:
        return {name: upstream.url for name, upstream in self.upstreams.items()}

    def reset(self) -> None:
        for upstream in self.upstreams.values():
            upstream.reset()

    def total_requests(self) -> int:
        return sum(len(upstream.requests) for upstream in self.upstreams.values())

    def stop(self) -> None:
        for upstream in self.upstreams.values():
            upstream.stop()


def service_env(urls: Mapping[str, str]) -> dict[str, str]:
    return {f"{name.upper()}_SERVICE_URL": url for name, url in urls.items()}


def gateway_env(urls: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: the test secret, every service URL, no inherited gateway settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_SERVICE_URL")
        and not key.startswith("JWT_")
        and key not in _INHERITED_SETTINGS
    }
    env.update(
        JWT_SECRET=JWT_SECRET,
        RATE_LIMIT_MAX=UNLIMITED_RATE,
        RATE_LIMIT_USER_MAX=UNLIMITED_RATE,
        PYTHONUNBUFFERED="1",
    )
    env.update(service_env(urls))
    env.update(extra or {})
    return env


# A stall of the machine running the tests (one timer late by more than the default 200 ms
# ``overload.lag_threshold_ms``, seen in CI as a 450 ms pause) would make the gateway
# overloaded and halve every rate limit for ``recover_after_ms``: the tests count limits
# exactly. So they run with a lag threshold no stall of theirs reaches, unless a test sets
# ``overload`` itself (test_rate_limits, which tests the tightening) or brings its own
# ``--config``. The monitor still samples, and in-flight overload is as in production.
STEADY_OVERLOAD: Mapping[str, Any] = {"overload": {"lag_threshold_ms": 30_000}}


def steady(config: Mapping[str, Any] | None, extra_args: Sequence[str]) -> Mapping[str, Any] | None:
    if "--config" in extra_args or (config is not None and "overload" in config):
        return config
    return {**STEADY_OVERLOAD, **(config or {})}


def write_config(directory: Path, config: Mapping[str, Any]) -> Path:
    path = directory / f"gateway-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(dict(config)))
    return path


@dataclass(eq=False)
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stdout_path: Path
    admin_port: int = 0  # the admin listener's (ADMIN_PORT), a free port of its own
    admin_token: str | None = None  # sent as the bearer token by ``admin`` when set

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr()

    def request(self, method: str, target: str, **kwargs: Any) -> RawResponse:
        return http_request(self.port, method, target, **kwargs)

    def get(self, target: str, **kwargs: Any) -> RawResponse:
        return self.request("GET", target, **kwargs)

    def admin(self, method: str, target: str, **kwargs: Any) -> RawResponse:
        """A request to the admin API (with ``admin_token`` unless ``token`` is given)."""
        kwargs.setdefault("token", self.admin_token)
        kwargs.setdefault("host", f"127.0.0.1:{self.admin_port}")
        return http_request(self.admin_port, method, target, **kwargs)

    def admin_get(self, target: str, **kwargs: Any) -> RawResponse:
        return self.admin("GET", target, **kwargs)

    def children(self) -> list[psutil.Process]:
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.pid).children(recursive=True)
        return children

    def workers(self) -> list[psutil.Process]:
        """The supervisor's worker processes: its children but the keeper."""
        workers = []
        for child in self.children():
            with contextlib.suppress(psutil.Error):
                if child.ppid() == self.pid and child.name() != KEEPER_NAME:
                    workers.append(child)
        return workers

    def keeper(self) -> psutil.Process | None:
        for child in self.children():
            with contextlib.suppress(psutil.Error):
                if child.name() == KEEPER_NAME and child.status() != psutil.STATUS_ZOMBIE:
                    return child
        return None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gateway exited with {self.process.returncode}:\n{self.output()[-4000:]}"
                )
            with contextlib.suppress(OSError, ValueError, IncompleteResponse):
                if probe_live(self.port):
                    return
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise AssertionError(f"gateway not live after {timeout_s}s:\n{self.output()[-4000:]}")

    def wait_all_workers(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the supervisor says every worker listens (its info line): ``wait_ready`` sees
        the first worker alone. A test that freezes or signals each worker needs all of them."""
        deadline = time.monotonic() + timeout_s
        while "supervising " not in self.output():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"workers not all listening:\n{self.output()[-4000:]}")
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        """Terminate the gateway and any worker it left behind, by PID."""
        workers = self.children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        _LAUNCHED.discard(self)


_LAUNCHED: set[GatewayProcess] = set()


def stop_all_gateways() -> None:
    """Stop every gateway these tests launched that is still registered (a safety net)."""
    for gateway in list(_LAUNCHED):
        gateway.stop()


atexit.register(stop_all_gateways)


def probe_live(port: int) -> bool:
    with RawConnection(port, timeout_s=LIVE_PROBE_TIMEOUT_S) as connection:
        connection.send(build_request("GET", "/live"))
        return connection.read_response().status == 200


def launch_gateway(
    workdir: Path,
    urls: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    binary: str = GATEWAY_BINARY,
) -> GatewayProcess:
    """Start ``api-gateway serve`` (by default this environment's) without waiting for it to
    become ready."""
    port = port or free_port()
    environment = gateway_env(urls, env)
    admin_port = int(environment.setdefault("ADMIN_PORT", str(free_port())))
    command = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args]
    config = steady(config, extra_args)
    if config is not None:
        command += ["--config", str(write_config(workdir, config))]
    stamp = time.monotonic_ns()
    stderr_path, stdout_path = workdir / f"stderr-{stamp}.log", workdir / f"stdout-{stamp}.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            command, env=environment, stdout=stdout, stderr=stderr, cwd=workdir
        )
    token = environment.get("ADMIN_TOKEN") or None
    gateway = GatewayProcess(process, port, stderr_path, stdout_path, admin_port, token)
    _LAUNCHED.add(gateway)
    return gateway


def start_gateway(
    workdir: Path,
    urls: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> GatewayProcess:
    """Start the gateway and wait until ``GET /live`` answers 200."""
    gateway = launch_gateway(workdir, urls, config, env, extra_args)
    gateway.wait_ready()
    return gateway


@contextlib.contextmanager
def running_gateway(
    workdir: Path,
    urls: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[GatewayProcess]:
    gateway = start_gateway(workdir, urls, config, env, extra_args)
    try:
        yield gateway
    finally:
        gateway.stop()


def run_until_exit(gateway: GatewayProcess, timeout_s: float = 10.0) -> int | None:
    """Wait for a gateway expected to refuse to start; None if it is still running."""
    try:
        return gateway.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        gateway.stop()
        return None


# Generous: the machine running the tests may be busy; exactness is what those tests check.
PATIENT_REDIS = {"redis": {"timeout_ms": 2000}}


@contextlib.contextmanager
def gateways_sharing(
    workdir: Path, urls: Mapping[str, str], redis_url: str, limit: int
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes sharing one Redis (server or cluster) and one global limit."""
    env = {"REDIS_URL": redis_url, "RATE_LIMIT_MAX": str(limit), "RATE_LIMIT_WINDOW_MS": "60000"}
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    with (
        running_gateway(workdir / "a", urls, config=PATIENT_REDIS, env=env) as first,
        running_gateway(workdir / "b", urls, config=PATIENT_REDIS, env=env) as second,
    ):
        yield first, second
