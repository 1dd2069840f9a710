"""The gateway's own endpoints: /health, /ready, /live."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson

from api_gateway.types import Handler, Request, Response

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

Probe = Callable[[], Awaitable[str | None]]


def json_response(status: int, document: object) -> Response:
    return Response(status, [JSON, NO_STORE], orjson.dumps(document))


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class Admin:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        service_states: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.probes = dict(probes)
        self.service_states = service_states or dict
        # Each service's instances and what is known of them; the gateway sets it once started.
        self.instance_states: Callable[[], dict[str, object]] = dict
        # Set on SIGTERM: the worker is going away, so load balancers must stop sending to it.
        self.draining = False

    def endpoints(self) -> dict[str, Handler]:
        return {"/health": self.health, "/ready": self.ready, "/live": self.live}

    async def live(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def health(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "status": "healthy",
                "uptime": round(time.monotonic() - self.started, 3),
                "memory": {"rss": rss_bytes()},
                "pid": os.getpid(),
                "services": self.service_states(),
                "instances": self.instance_states(),
            },
        )

    async def ready(self, request: Request) -> Response:
        if self.draining:
            return json_response(
                503,
                {"status": "draining", "checks": {"shutdown": "draining"}, "failed": ["shutdown"]},
            )
        names = list(self.probes)
        results = await asyncio.gather(*(self.probes[n]() for n in names))
        checks = {n: ("ok" if r is None else r) for n, r in zip(names, results, strict=True)}
        failed = [n for n, r in zip(names, results, strict=True) if r is not None]
        status = 503 if failed else 200
        return json_response(
            status,
            {"status": "not ready" if failed else "ready", "checks": checks, "failed": failed},
        )
