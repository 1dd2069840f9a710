"""`make dist`'s wheel carries the compiled request path: installed into a fresh virtual
environment, that gateway says it runs compiled and proxies a request. Without a C compiler the
wheel is pure Python and says so, at build time and at start-up.

The slow tests of the suite (marked ``slow``): the compiled wheel takes the build of an sdist
and of the wheel from it (setuptools, mypy and the runtime dependencies in an isolated
environment, then the compile), an install from PyPI pinned by constraints.txt, and one
request: 113 s measured on two busy cores, nearly all of it the compile. The pure-Python wheel
takes 2 s. Each step has its own time limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import pytest
from support.gateway import Fleet, launch_gateway
from support.tokens import mint

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
VERSION = metadata.version("api-gateway")
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
TOKEN = mint(sub="user-1", tenant_id="tenant-1")
BUILD_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 60
NO_COMPILER = "api-gateway-test-no-such-cc"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + INSTALL_TIMEOUT_S + 120)]


def build_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What `make dist` runs with: the constraints pin every build environment; nothing of the
    checkout (PYTHONPATH) leaks into what is built or run."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIP_CONSTRAINT"] = str(CONSTRAINTS)
    env.update(extra or {})
    return env


def run(
    command: list[str], timeout_s: float, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        env=dict(env or build_env()),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def listening(log: str) -> dict[str, object]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return next(dict(line) for line in lines if line.get("msg") == "listening")


def make_dist(outdir: Path, env: Mapping[str, str] | None = None, *flags: str) -> str:
    """`make dist`'s command (python -m build), into ``outdir``; its output."""
    done = run([sys.executable, "-m", "build", *flags, "--outdir", str(outdir), str(REPO)],
               BUILD_TIMEOUT_S, env)  # fmt: skip
    return done.stdout + done.stderr


def test_make_dists_wheel_installs_compiled_into_a_fresh_venv_and_proxies(
    services: Fleet, tmp_path: Path
) -> None:
    check = subprocess.run([sys.executable, str(REPO / "tools" / "compile.py"), "--check"],
                           capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    if check.returncode != 0:
        pytest.skip(check.stderr.strip())
    dist = tmp_path / "dist"

    output = make_dist(dist)

    assert "compiling the request path with mypyc" in output
    assert ": warning:" not in output, output  # mypyc's and the C compiler's
    wheel = dist / f"api_gateway-{VERSION}-cp311-cp311-{PLATFORM}.whl"
    assert {path.name for path in dist.iterdir()} == {f"api_gateway-{VERSION}.tar.gz", wheel.name}
    with tarfile.open(dist / f"api_gateway-{VERSION}.tar.gz") as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"tools/build_backend.py", "tools/compile.py", "setup.py", "constraints.txt"} <= names
    assert not any("_compiled" in name for name in names)  # built from the sources, never shipped
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
    assert "api_gateway/_compiled/manifest.json" in files
    assert any(name.endswith(".so") and "/routing." in name for name in files)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], INSTALL_TIMEOUT_S, cwd=tmp_path)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS),
         str(wheel)], INSTALL_TIMEOUT_S, cwd=tmp_path)  # fmt: skip
    binary = str(venv / "bin" / "api-gateway")
    version = run([binary, "--version"], COMMAND_TIMEOUT_S, cwd=tmp_path)

    assert version.stdout.splitlines()[1] == "request path: compiled (mypyc)", version.stdout
    assert version.stderr == ""
    gateway = launch_gateway(tmp_path, services.urls(), env={"PYTHONPATH": ""}, binary=binary)
    try:
        gateway.wait_ready()
        response = gateway.get("/api/v1/tickets/1", token=TOKEN)

        assert response.status == 200
        assert services["ticket"].requests[-1].path == "/api/v1/tickets/1"
        assert listening(gateway.stdout_path.read_text())["compiled"] is True
        assert "running interpreted" not in gateway.stderr()
    finally:
        gateway.stop()


def test_without_a_c_compiler_the_wheel_is_pure_python_and_says_so(tmp_path: Path) -> None:
    dist = tmp_path / "dist"

    output = make_dist(dist, build_env({"CC": NO_COMPILER}), "--wheel")

    assert (
        "api-gateway: WARNING: building a pure-Python wheel, which runs interpreted (about 0.7x "
        f"the compiled throughput): no C compiler (`{NO_COMPILER}` not found): apt-get install "
        "gcc, then build again"
    ) in output
    wheel = dist / f"api_gateway-{VERSION}-py3-none-any.whl"
    assert [path.name for path in dist.iterdir()] == [wheel.name]
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        assert not any(name.endswith(".so") for name in archive.namelist())
        archive.extractall(unpacked)

    env = build_env({"PYTHONPATH": str(unpacked)})
    version = run([sys.executable, "-m", "api_gateway", "--version"], COMMAND_TIMEOUT_S, env,
                  cwd=tmp_path)  # fmt: skip

    why = f"installed without the compiled build: no C compiler (`{NO_COMPILER}` not found)"
    assert version.stdout.splitlines()[1].startswith(f"request path: interpreted ({why}: ")
    assert version.stderr == (
        "api-gateway: running interpreted (about 0.7x the compiled throughput): "
        f"{why}: apt-get install gcc, then reinstall\n"
    )
