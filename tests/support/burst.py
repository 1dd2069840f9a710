"""Many requests at once: each on its own connection, all sent before any answer is read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

BURST_TIMEOUT_S = 30.0


async def _one(port: int, path: str) -> tuple[int, float]:
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".encode())
        status_line = await reader.readline()
        return int(status_line.split()[1]), time.monotonic() - start
    finally:
        writer.close()


async def _burst(ports: Sequence[int], count: int, path: str) -> list[tuple[int, float]]:
    async with asyncio.timeout(BURST_TIMEOUT_S):
        return await asyncio.gather(*(_one(ports[i % len(ports)], path) for i in range(count)))


def burst(ports: Sequence[int], count: int, path: str) -> list[int]:
    """The status of each of ``count`` concurrent requests, spread over the gateways' ports."""
    return [status for status, _ in asyncio.run(_burst(ports, count, path))]
