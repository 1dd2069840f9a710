"""Idle-connection case: hold many keep-alive connections open and read the proxy's RSS growth."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from gwbench.procs import tree_rss

SETTLE_S = 1.0


@dataclass(frozen=True)
class IdleResult:
    wanted: int
    opened: int
    served: int  # connections that got a 200 to their one request
    rss_before: int
    rss_after: int
    error: str | None = None

    @property
    def bytes_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.opened if self.opened else 0.0


async def one_request(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, request: bytes
) -> bool:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def open_many(
    port: int, count: int, request: bytes, deadline_s: float, held: list[asyncio.StreamWriter]
) -> int:
    """Open ``count`` connections; every other one sends ``request`` and reads the answer."""
    served = 0
    gate = asyncio.Semaphore(200)  # bounded concurrency while connecting

    async def connect(index: int) -> None:
        nonlocal served
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                held.append(writer)
                if index % 2 == 0 and await one_request(writer, reader, request):
                    served += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return  # counted as not open

    tasks = [asyncio.create_task(connect(i)) for i in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    return served


async def hold(
    port: int, count: int, request: bytes, tree: Sequence[psutil.Process], deadline_s: float
) -> IdleResult:
    rss_before = tree_rss(tree)
    held: list[asyncio.StreamWriter] = []
    error = None
    try:
        served = await open_many(port, count, request, deadline_s, held)
        await asyncio.sleep(SETTLE_S)
        still_open = sum(1 for writer in held if not writer.transport.is_closing())
        rss_after = tree_rss(tree)
    except OSError as exc:
        served, still_open, rss_after, error = 0, len(held), tree_rss(tree), str(exc)
    finally:
        for writer in held:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in held), return_exceptions=True), 10
            )
    if still_open < count and error is None:
        error = f"only {still_open} of {count} connections stayed open"
    return IdleResult(count, still_open, served, rss_before, rss_after, error)


def idle_connections(
    port: int,
    path: str,
    token: str,
    count: int,
    tree: Sequence[psutil.Process],
    deadline_s: float = 60.0,
) -> IdleResult:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    result = asyncio.run(hold(port, count, request, tree, deadline_s))
    if time.monotonic() - started > deadline_s + 30:
        return IdleResult(
            count,
            result.opened,
            result.served,
            result.rss_before,
            result.rss_after,
            "took too long",
        )
    return result
