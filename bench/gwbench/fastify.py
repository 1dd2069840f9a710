"""Optional rows: the seed's Node stack (Fastify + @fastify/http-proxy), for comparison.

Its sources are in ``bench/fastify/``; they are copied to ``bench/.work/fastify/`` and installed
there with ``npm install`` (exact versions, git-ignored), so node_modules is never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from gwbench.procs import Processes, Service, free_port
from gwbench.servers import JWT_SECRET, Layout

SOURCES = Path(__file__).resolve().parent.parent / "fastify"
FILES = ("package.json", "server.js")
INSTALL_TIMEOUT_S = 300


class FastifyUnavailable(RuntimeError):
    """node or npm is missing, or the install failed: the optional rows are skipped."""


def prepare(layout: Layout) -> Path:
    """Copy the sources into the work directory and ``npm install`` when package.json changed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise FastifyUnavailable("node/npm not found")
    target = layout.work / "fastify"
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / "node_modules" / ".bench-installed"
    wanted = (SOURCES / "package.json").read_text()
    for name in FILES:
        shutil.copyfile(SOURCES / name, target / name)
    if stamp.exists() and stamp.read_text() == wanted:
        return target
    argv = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"]
    try:
        done = subprocess.run(
            argv, cwd=target, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise FastifyUnavailable("npm install timed out") from exc
    if done.returncode != 0:
        raise FastifyUnavailable(f"npm install failed: {done.stderr.strip()[-300:]}")
    stamp.write_text(wanted)
    return target


def version(target: Path) -> str:
    node = shutil.which("node") or "node"
    node_version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        import json

        package = json.loads((target / "node_modules" / "fastify" / "package.json").read_text())
        return f"fastify {package['version']} on node {node_version}"
    except (OSError, ValueError, KeyError):
        return f"node {node_version}"


def start(
    procs: Processes,
    layout: Layout,
    target: Path,
    name: str,
    *,
    policies: bool,
    upstream_port: int,
    cpus: str | None,
) -> Service:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "UPSTREAM": f"http://127.0.0.1:{upstream_port}",
        "JWT_SECRET": JWT_SECRET,
        "POLICIES": "1" if policies else "0",
        "NODE_ENV": "production",
    }
    argv = [shutil.which("node") or "node", str(target / "server.js")]
    return procs.start(
        name, argv, log_path=layout.logs / f"{name}.log", port=port, cpus=cpus, env=env
    )
