"""Reloading the configuration: where it comes from, what a reload may change, and asking the
supervisor for one from inside a worker (the admin API's ``POST /reload``).

The supervisor reloads on SIGHUP (``supervisor.py``): it reads the same ``--config`` file and
environment again (``*_FILE`` secrets included) with the same command-line overrides, validates
everything, and on success replaces the workers one at a time. ``request_reload`` validates in
the worker first, so a broken file is answered at once, then signals the supervisor and waits
for its record (``reload_status.py``) of an attempt begun after the signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Final

from api_gateway.config import loader
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.observability.snapshots import DIRECTORY_VARIABLE
from api_gateway.reload_status import ReloadStatus, read_reload_status

# Set by the supervisor for its workers: where the configuration comes from, and its pid.
SOURCE_VARIABLE: Final = "API_GATEWAY_CONFIG_SOURCE"
SUPERVISOR_VARIABLE: Final = "API_GATEWAY_SUPERVISOR"
RELOAD_SIGNAL: Final = signal.SIGHUP
POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The ``--config`` file and the command-line overrides: what ``serve`` was started with."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    workers: int | None = None

    def load(self) -> GatewayConfig:
        """Defaults, the file, the environment (``*_FILE`` read again), then the overrides."""
        return self.overridden(loader.load(self.path))

    def overridden(self, config: GatewayConfig) -> GatewayConfig:
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--workers", "must be at least 1")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ConfigError("--port", "must be between 0 and 65535")
        if self.host is None and self.port is None and self.workers is None:
            return config
        server = config.server
        server = replace(
            server,
            host=server.host if self.host is None else self.host,
            port=server.port if self.port is None else self.port,
            workers=server.workers if self.workers is None else self.workers,
        )
        return replace(config, server=server)

    def encoded(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decoded(cls, text: str) -> ConfigSource:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a configuration source")
        path, host = document.get("path"), document.get("host")
        port, workers = document.get("port"), document.get("workers")
        return cls(
            path if isinstance(path, str) else None,
            host if isinstance(host, str) else None,
            port if isinstance(port, int) else None,
            workers if isinstance(workers, int) else None,
        )


def restart_free(current: GatewayConfig, new: GatewayConfig) -> None:
    """Refuse what a reload cannot apply: the listening address (every worker slot keeps its
    socket for the supervisor's life, and its queue with it)."""
    for key in ("host", "port"):
        before, after = getattr(current.server, key), getattr(new.server, key)
        if before != after:
            raise ConfigError(
                f"server.{key}",
                f"changed from {before} to {after}: a new listening address needs a restart",
            )
    # The admin listener's socket too is the supervisor's, opened once.
    old_admin, new_admin = current.admin, new.admin
    for key in ("host", "port"):
        before = None if old_admin is None else getattr(old_admin, key)
        after = None if new_admin is None else getattr(new_admin, key)
        if before != after:
            raise ConfigError(
                f"admin.{key}",
                f"changed from {before} to {after}: a new admin address needs a restart",
            )


def validated(source: ConfigSource, current: GatewayConfig | None) -> GatewayConfig:
    """The new configuration, or ConfigError naming the key (the supervisor's check too)."""
    config = source.load()
    if current is not None:
        restart_free(current, config)
    return config


@dataclass(frozen=True, slots=True)
class ReloadResult:
    # "ok", "error" (nothing changed), "timeout" (the supervisor did not say), or "unavailable"
    # (no supervisor to ask: an in-process gateway)
    outcome: str
    message: str
    generation: int  # the supervisor's attempts so far, as last seen
    key: str | None = None  # the configuration key at fault, when the worker's check found it

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def settled(status: ReloadStatus, before: int, asked_unix: float) -> ReloadResult | None:
    """The answer to a reload asked at ``asked_unix``, once an attempt begun since is recorded
    (one under way when the signal came is not it: the supervisor runs another after it)."""
    if status.generation <= before or status.last_attempt_unix is None:
        return None
    if status.last_attempt_unix < asked_unix:
        return None
    success = status.last_success_unix
    if success is not None and success >= status.last_attempt_unix:  # the latest one succeeded
        return ReloadResult("ok", "configuration reloaded", status.generation)
    return ReloadResult("error", status.last_error or "reload failed", status.generation)


def source_from_environment() -> ConfigSource | None:
    text = os.environ.get(SOURCE_VARIABLE)
    if not text:
        return None
    try:
        return ConfigSource.decoded(text)
    except ValueError:
        return None


async def request_reload(
    timeout_s: float,
    current: GatewayConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> ReloadResult:
    """From inside a worker: validate, ask the supervisor to reload, wait for its answer.

    ``current`` is the running configuration (a changed address is refused at once). Waits at
    most ``timeout_s``, polling the supervisor's record; the event loop keeps serving.
    """
    source = source_from_environment()
    supervisor = os.environ.get(SUPERVISOR_VARIABLE, "")
    directory = os.environ.get(DIRECTORY_VARIABLE)
    if source is None or not supervisor.isdigit():
        return ReloadResult("unavailable", "this gateway runs without a supervisor", 0)
    try:
        await asyncio.to_thread(validated, source, current)
    except ConfigError as exc:
        generation = read_reload_status(directory).generation
        return ReloadResult("error", str(exc), generation, exc.key)
    before = read_reload_status(directory).generation
    asked = clock()
    try:
        os.kill(int(supervisor), RELOAD_SIGNAL)
    except OSError:
        return ReloadResult("error", "the supervisor could not be signalled", before)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status = read_reload_status(directory)
        result = settled(status, before, asked)
        if result is not None:
            return result
        if loop.time() >= deadline:
            return ReloadResult(
                "timeout",
                f"no answer from the supervisor within {timeout_s:g} s (the reload may still "
                "happen: see reload.json)",
                status.generation,
            )
        await asyncio.sleep(POLL_S)
