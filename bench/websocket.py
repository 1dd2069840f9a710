#!/usr/bin/env python3
"""WebSocket through the gateway: message throughput next to a direct connection, and the
gateway's memory per idle WebSocket.

    .venv/bin/python bench/websocket.py [--messages 20000] [--size 100] [--idle 2000]

An echo upstream (the ``websockets`` library, its own process) and one gateway worker (the
compiled build when it is fresh). Throughput: one client sends ``--messages`` messages of
``--size`` bytes and reads every echo, pipelined 100 at a time, once straight to the upstream
and once through the gateway. Memory: the gateway's resident memory before and after
``--idle`` WebSockets are opened and left idle, divided by their number.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt
import psutil
import yaml
from gwbench.servers import free_ports
from websockets.asyncio.client import ClientConnection, connect

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = REPO / ".venv" / "bin" / "python"
GATEWAY = REPO / ".venv" / "bin" / "api-gateway"
SECRET = "bench-websocket-secret-" + "x" * 32
WINDOW = 100  # messages in flight at once

ECHO = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(connection):
    async for message in connection:
        await connection.send(message)

async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None, ping_interval=None):
        await asyncio.Future()

asyncio.run(main())
"""


async def wait_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


async def throughput(url: str, headers: dict[str, str], messages: int, size: int) -> float:
    payload = b"m" * size
    async with connect(url, additional_headers=headers, max_size=None, ping_interval=None) as ws:
        started = time.perf_counter()
        sent = 0
        for _ in range(messages // WINDOW):
            for _ in range(WINDOW):
                await ws.send(payload)
            for _ in range(WINDOW):
                await ws.recv()
            sent += WINDOW
        return sent / (time.perf_counter() - started)


async def idle_memory(url: str, headers: dict[str, str], count: int, pid: int) -> float:
    process = psutil.Process(pid)
    before = process.memory_info().rss
    sockets: list[ClientConnection] = []
    try:
        for _ in range(count):
            sockets.append(
                await connect(url, additional_headers=headers, ping_interval=None, open_timeout=30)
            )
        await asyncio.sleep(1.0)
        after = process.memory_info().rss
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return (after - before) / count


def token() -> str:
    claims = {"sub": "bench", "tenant_id": "t", "iss": "tickettoken-api", "exp": time.time() + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def start(args: argparse.Namespace, work: Path) -> tuple[list[subprocess.Popen[bytes]], int, int]:
    """The echo upstream and one gateway worker in front of it, as processes of their own."""
    upstream_port, gateway_port = free_ports(2)
    config = {
        "routes": {"/queue": {"websocket_max_per_user": args.idle + 10}},
        "server": {"max_websockets": args.idle + 10},
    }
    config_path = work / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "JWT_SECRET": SECRET,
        "QUEUE_SERVICE_URL": f"http://127.0.0.1:{upstream_port}",
        "RATE_LIMIT_MAX": "100000000",
        "RATE_LIMIT_USER_MAX": "100000000",
        "LOG_LEVEL": "warn",
        "ADMIN_PORT": "0",
    }
    upstream = subprocess.Popen([str(PYTHON), "-c", ECHO, str(upstream_port)])
    gateway = subprocess.Popen(
        [str(GATEWAY), "serve", "--config", str(config_path), "--host", "127.0.0.1",
         "--port", str(gateway_port)],
        env=env,
    )  # fmt: skip
    return [gateway, upstream], upstream_port, gateway_port


async def measure(
    args: argparse.Namespace, upstream_port: int, gateway_port: int, gateway_pid: int
) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    proxied_url = f"ws://127.0.0.1:{gateway_port}/api/v1/queue/live"
    await wait_port(upstream_port)
    await wait_port(gateway_port)
    direct = await throughput(f"ws://127.0.0.1:{upstream_port}/", {}, args.messages, args.size)
    proxied = await throughput(proxied_url, headers, args.messages, args.size)
    per_idle = await idle_memory(proxied_url, headers, args.idle, gateway_pid)
    print(f"messages of {args.size} bytes, {WINDOW} in flight, echoed:")
    print(f"  direct to the upstream   {direct:10,.0f} messages/s")
    print(f"  through the gateway      {proxied:10,.0f} messages/s ({proxied / direct:.2f}x)")
    print(f"gateway memory per idle WebSocket ({args.idle} open): {per_idle / 1024:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--idle", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.idle + 1024)), hard))
    with tempfile.TemporaryDirectory() as work:
        processes, upstream_port, gateway_port = start(args, Path(work))
        try:
            asyncio.run(measure(args, upstream_port, gateway_port, processes[0].pid))
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    sys.exit(main())
