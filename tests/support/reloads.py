"""Gateways whose configuration file the test rewrites, reloaded with SIGHUP, and the
supervisor's record of reloads (``<dir>/reload.json``) read as the workers read it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from api_gateway.reload_status import STATUS_FILE, ReloadStatus, read_reload_status
from support.gateway import GatewayProcess, launch_gateway

RELOAD_TIMEOUT_S = 30.0
POLL_S = 0.05


class ReloadableGateway:
    """A running gateway, its ``--config`` file, and the temporary directory its supervisor
    makes its private directory in (``TMPDIR``), so the test finds ``reload.json``."""

    def __init__(self, gateway: GatewayProcess, config_path: Path, tmpdir: Path) -> None:
        self.gateway, self.config_path, self.tmpdir = gateway, config_path, tmpdir

    def write(self, config: Mapping[str, Any]) -> None:
        self.write_text(yaml.safe_dump(dict(config)))

    def write_text(self, text: str) -> None:
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, self.config_path)

    def directory(self) -> str | None:
        found = [path for path in self.tmpdir.glob("api-gateway-*") if path.is_dir()]
        return str(found[0]) if len(found) == 1 else None

    def status(self) -> ReloadStatus:
        return read_reload_status(self.directory())

    def reload(self, timeout_s: float = RELOAD_TIMEOUT_S) -> ReloadStatus:
        """SIGHUP, then the record once the attempt is done (bounded in time)."""
        before = self.status().generation
        os.kill(self.gateway.pid, signal.SIGHUP)
        return self.wait_for_generation(before + 1, timeout_s)

    def wait_for_generation(self, generation: int, timeout_s: float) -> ReloadStatus:
        deadline = time.monotonic() + timeout_s
        status = self.status()
        while time.monotonic() < deadline:
            status = self.status()
            if status.generation >= generation:
                return status
            time.sleep(POLL_S)
        raise AssertionError(
            f"reload {generation} not recorded after {timeout_s}s ({STATUS_FILE}: {status}):\n"
            f"{self.gateway.output()[-3000:]}"
        )


@contextlib.contextmanager
def reloadable_gateway(
    workdir: Path,
    urls: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[ReloadableGateway]:
    config_path = workdir / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(dict(config or {})))
    tmpdir = workdir / "tmp"
    tmpdir.mkdir()
    gateway = launch_gateway(
        workdir,
        urls,
        env={**(env or {}), "TMPDIR": str(tmpdir)},
        extra_args=["--config", str(config_path), *extra_args],
    )
    try:
        gateway.wait_ready()
        yield ReloadableGateway(gateway, config_path, tmpdir)
    finally:
        gateway.stop()
