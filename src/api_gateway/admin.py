"""The gateway's own endpoints: /health, /ready, /live, and who may see what of them.

``/health/live`` and ``/health/ready`` are the same handlers under the original gateway's paths,
which container health checks and orchestrators of the platform already probe.

They share the traffic port, so what they tell is split by client address: anyone learns
whether the gateway is healthy or ready; only addresses in ``admin.allow`` (loopback by default)
see what is inside (instances, pids, memory, breakers, metrics, why a check failed).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson

from api_gateway.errors import Forbidden
from api_gateway.lookups import CachedLookup
from api_gateway.types import Handler, Request, Response

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
# How long one round of readiness probes answers /ready: a flood of /ready costs one round per
# period per worker, and a change of state shows within the period.
READY_TTL_MS: Final = 1000
READINESS: Final = "ready"  # the one key of the readiness cache

Probe = Callable[[], Awaitable[str | None]]
# The probes' results: per check, None when it passed, else why not.
Checks = dict[str, str | None]


def json_response(status: int, document: object) -> Response:
    return Response(status, [JSON, NO_STORE], orjson.dumps(document))


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class Admin:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        service_states: Callable[[], dict[str, object]] | None = None,
        allowed: Callable[[str], bool] = loopback,
        clock_ms: Callable[[], float] = monotonic_ms,
        ready_ttl_ms: float = READY_TTL_MS,
    ) -> None:
        self.started = time.monotonic()
        self.probes = dict(probes)
        self.service_states = service_states or dict
        # Whether a client address may see the gateway's insides (``admin.allow``).
        self.allowed = allowed
        # Each service's instances and what is known of them; the gateway sets it once started.
        self.instance_states: Callable[[], dict[str, object]] = dict
        # Set on SIGTERM: the worker is going away, so load balancers must stop sending to it.
        self.draining = False
        # Single flight and a short life: concurrent /ready calls share one round of probes.
        self.readiness: CachedLookup[Checks] = CachedLookup(
            self._probe_all, ready_ttl_ms, ready_ttl_ms, 1, clock_ms
        )

    def endpoints(self) -> dict[str, Handler]:
        return {
            "/health": self.health,
            "/ready": self.ready,
            "/live": self.live,
            "/health/ready": self.ready,
            "/health/live": self.live,
        }

    def restricted(self, handler: Handler) -> Handler:
        """``handler`` for addresses in ``admin.allow``; 403 for everyone else."""

        def guarded(request: Request) -> Awaitable[Response]:
            if not self.allowed(request.client_ip):
                raise Forbidden("served to the gateway's admin addresses only")
            return handler(request)

        return guarded

    async def live(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def health(self, request: Request) -> Response:
        document: dict[str, object] = {
            "status": "healthy",
            "uptime": round(time.monotonic() - self.started, 3),
        }
        if self.allowed(request.client_ip):
            document["memory"] = {"rss": rss_bytes()}
            document["pid"] = os.getpid()
            document["services"] = self.service_states()
            document["instances"] = self.instance_states()
        return json_response(200, document)

    async def ready(self, request: Request) -> Response:
        if self.draining:
            return json_response(
                503,
                {"status": "draining", "checks": {"shutdown": "draining"}, "failed": ["shutdown"]},
            )
        results = await self.readiness.get(READINESS)
        assert results is not None  # _probe_all always answers
        # Why a check failed may name an internal host (Redis's address, an instance's): only
        # the admin addresses learn it, everyone else which check failed.
        reasons = self.allowed(request.client_ip)
        checks = {
            name: "ok" if reason is None else (reason if reasons else "failed")
            for name, reason in results.items()
        }
        failed = [name for name, reason in results.items() if reason is not None]
        return json_response(
            503 if failed else 200,
            {"status": "not ready" if failed else "ready", "checks": checks, "failed": failed},
        )

    async def _probe_all(self, key: str) -> Checks:
        names = list(self.probes)
        results = await asyncio.gather(*(self.probes[name]() for name in names))
        return dict(zip(names, results, strict=True))
