"""A private redis-server for the Redis-backed rows, and a PING to see whether a Redis answers."""

from __future__ import annotations

import shutil
import socket
import time
from urllib.parse import urlsplit

from gwbench.procs import Processes, Service
from gwbench.servers import Layout, free_ports

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


def start_redis(procs: Processes, layout: Layout) -> tuple[Service | None, str]:
    """A private redis-server on the load side's core, as a backing service runs on its own
    host in production: it does not take the gateway's core. Its CPU counts on the load
    side. Without redis-server, the machine's Redis at 127.0.0.1:6379 (no Service)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None, MACHINE_REDIS
    port = free_ports(1)[0]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(layout.work)]
    service = procs.start(
        "redis", argv, log_path=layout.logs / "redis.log", port=port, cpus=layout.load_cpus
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    service.snapshot_tree()
    return service, url


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
