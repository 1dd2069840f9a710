"""The gateway runs on a read-only root file system, writing only to TMPDIR, as the image and the
Kubernetes example run it (readOnlyRootFilesystem, an emptyDir on /tmp).

No container engine runs here, so the test makes the same conditions with a private mount
namespace (an unprivileged user namespace): the whole root remounted read-only, a fresh tmpfs as
TMPDIR, a working directory that cannot be written. Two workers without Redis, so the
supervisor's private directory holds the metrics snapshots, the workers' state and the keeper's
socket; a proxied request goes through the keeper's limits.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import GATEWAY_BINARY, Fleet, GatewayProcess, gateway_env
from support.ports import free_port

EXIT_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 10.0
STATE_TIMEOUT_S = 5.0
POLL_S = 0.1
WRITABLE_ROOT = 97  # the wrapper's exit status when the root is still writable
# Runs inside the namespace: read-only root, tmpfs TMPDIR, then the gateway (as "$@").
WRAPPER = f"""
set -e
mount -o remount,bind,ro /
mount -o remount,bind,ro /dev/shm 2>/dev/null || true
mount -t tmpfs -o size=16m,mode=1777 tmpfs "$TMPDIR"
if touch ./probe 2>/dev/null; then
  echo "the root file system is writable" >&2
  exit {WRITABLE_ROOT}
fi
exec "$@"
"""


def private_read_only_root() -> list[str] | None:
    """The command prefix that runs a process as described, or None where it cannot be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "--user", "--map-root-user", "--mount"]
    check = "mount -o remount,bind,ro /"  # the wrapper checks that it took
    try:
        done = subprocess.run(
            [*prefix, "sh", "-c", check], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if done.returncode == 0 else None


PREFIX = private_read_only_root()
pytestmark = pytest.mark.skipif(
    PREFIX is None, reason="unprivileged user and mount namespaces are not available"
)


@pytest.fixture
def read_only_gateway(service_fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    assert PREFIX is not None
    tmpdir, app = tmp_path / "tmp", tmp_path / "app"
    tmpdir.mkdir()
    app.mkdir()
    port = free_port()
    env = gateway_env(
        service_fleet.urls(),
        {"TMPDIR": str(tmpdir), "ADMIN_PORT": str(free_port()), "GATEWAY_WORKERS": "2"},
    )
    command = [*PREFIX, "sh", "-c", WRAPPER, "sh", GATEWAY_BINARY, "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, cwd=app)
    gateway = GatewayProcess(process, port, stderr_path, stdout_path, int(env["ADMIN_PORT"]))
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


def supervisor_directory(gateway: GatewayProcess, tmpdir: Path) -> list[str]:
    """The names in the supervisor's private directory, seen through the gateway's own mounts."""
    inside = Path(f"/proc/{gateway.pid}/root") / tmpdir.relative_to("/")
    [directory] = [path for path in inside.iterdir() if path.name.startswith("api-gateway-")]
    return sorted(path.name for path in directory.iterdir())


def written(names: list[str], suffix: str) -> int:
    return len([name for name in names if name.endswith(suffix)])


def test_the_gateway_serves_and_stops_cleanly_on_a_read_only_root(
    read_only_gateway: GatewayProcess, tmp_path: Path
) -> None:
    gateway = read_only_gateway
    assert gateway.get("/ready").status == 200
    answer = gateway.get("/api/v1/venues/health")  # public, proxied, limited through the keeper
    assert answer.status == 200, answer
    assert gateway.keeper() is not None
    deadline = time.monotonic() + STATE_TIMEOUT_S
    names: list[str] = []
    while time.monotonic() < deadline:
        names = supervisor_directory(gateway, tmp_path / "tmp")
        if written(names, ".state") == written(names, ".metrics") == 2:  # one of each per worker
            break
        time.sleep(POLL_S)
    assert "keeper.sock" in names and written(names, ".metrics") == 2, names
    health = gateway.admin_get("/health")
    assert health.status == 200 and b'"worker_count":2' in health.body.replace(b" ", b"")
    assert not list((tmp_path / "tmp").iterdir()), "written past the tmpfs"
    assert not list((tmp_path / "app").iterdir())

    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(EXIT_TIMEOUT_S) == 0, gateway.output()[-3000:]
    output = gateway.output()
    for trouble in ("Read-only file system", "cannot write", "Traceback"):
        assert trouble not in output, output[-3000:]


def test_without_a_writable_tmpdir_start_up_stops_with_one_line_naming_it(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    """A read-only root with no tmpfs mounted: no traceback, the variable to fix named."""
    assert PREFIX is not None
    (tmp_path / "tmp").mkdir()
    env = gateway_env(service_fleet.urls(), {"TMPDIR": str(tmp_path / "tmp")})
    env["ADMIN_PORT"] = str(free_port())
    wrapper = 'mount -o remount,bind,ro / && exec "$@"'
    command = [*PREFIX, "sh", "-c", wrapper, "sh", GATEWAY_BINARY, "serve"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    done = subprocess.run(
        command, env=env, capture_output=True, timeout=EXIT_TIMEOUT_S, check=False, text=True
    )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("api-gateway: invalid configuration: TMPDIR: no writable temporary")
