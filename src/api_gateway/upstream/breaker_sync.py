"""Breakers shared by the workers of one gateway, through the keeper.

Every ``SYNC_EVERY_S`` each worker writes its breakers' windows (calls, failures, when it
opened) under its own key and reads every worker's; each breaker then counts the others' calls
and failures with its own, and opens if another worker's opened since it last closed. So the
gateway's breakers open at the documented volume and error rate whatever the number of workers,
and together: within one period of each other. The cost is two commands per period per worker,
none on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Final

import orjson

from api_gateway.resp.client import RedisClient
from api_gateway.stores import StoreUnavailable
from api_gateway.upstream.service import UpstreamService

log = logging.getLogger("api_gateway.breaker")
SYNC_EVERY_S: Final = 0.1
KEY: Final = "gw:breakers:%d"
# A worker that stops writing (dead, stopped) drops out of the others' sums after this.
EXPIRES_MS: Final = 2000

Window = tuple[int, int, float]  # calls, failures, opened at (0: closed)


def merge(windows: list[dict[str, Window]]) -> dict[str, Window]:
    """The other workers' windows, summed per service; the latest opening."""
    merged: dict[str, Window] = {}
    for worker in windows:
        for name, (calls, failures, opened_at) in worker.items():
            seen_calls, seen_failures, seen_opened = merged.get(name, (0, 0, 0.0))
            merged[name] = (
                seen_calls + calls,
                seen_failures + failures,
                max(seen_opened, opened_at),
            )
    return merged


def parse(raw: bytes) -> dict[str, Window]:
    """One worker's windows as it wrote them; anything malformed counts as nothing."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    windows: dict[str, Window] = {}
    if isinstance(document, dict):
        for name, value in document.items():
            if not (isinstance(value, list) and len(value) == 3):
                continue
            calls, failures, opened_at = value
            if isinstance(calls, int) and isinstance(failures, int) and _number(opened_at):
                windows[name] = (calls, failures, float(opened_at))
    return windows


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class BreakerSync:
    def __init__(
        self,
        client: RedisClient,
        services: Mapping[str, UpstreamService],
        slot: int,
        workers: int,
        clock_ms: Callable[[], float],
    ) -> None:
        self.client, self.services, self.slot = client, services, slot
        self.others = [KEY % other for other in range(workers) if other != slot]
        self.clock_ms = clock_ms
        self.task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        if self.others:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def sync(self) -> None:
        now = self.clock_ms()
        own = {name: s.breaker.window(now) for name, s in self.services.items()}
        await self.client.command("SET", KEY % self.slot, orjson.dumps(own), "PX", EXPIRES_MS)
        replies = await self.client.command("MGET", *self.others)
        windows = (
            [parse(r) for r in replies if isinstance(r, bytes)] if isinstance(replies, list) else []
        )
        merged = merge(windows)
        now = self.clock_ms()
        for name, service in self.services.items():
            calls, failures, opened_at = merged.get(name, (0, 0, 0.0))
            service.share_breaker(calls, failures, opened_at, now)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY_S)
            try:
                await self.sync()
            except StoreUnavailable as exc:
                # The keeper is away: each worker's breakers decide alone meanwhile.
                self.failures += 1
                if self.failures == 1:
                    log.warning("breakers are not shared while the keeper is away: %s", exc)
                continue
            if self.failures:
                self.failures = 0
                log.warning("breakers are shared by the workers again")
