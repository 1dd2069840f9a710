"""The gateway's own endpoints on the traffic port: /health, /ready, /live (and the original
gateway's /health/live, /health/ready, which container health checks already probe).

They tell anyone whether the gateway is alive, healthy and ready, and nothing of what is inside:
no instance, pid, address, or why a check failed. The insides are the admin listener's
(``admin_api.py``).

Readiness is honest: 200 while this gateway can serve (it listens, its configuration is
loaded, it is not draining). The dependency checks (Redis, auth-service, venue-service, the
signing keys) are reported in the body, and make it 503 only when ``readiness.require`` lists
them: as a fleet's readiness probe, one dependency's outage must not take every gateway out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

import orjson

from api_gateway.lookups import CachedLookup
from api_gateway.types import Handler, Request, Response

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
# How long one round of readiness probes answers /ready: a flood of /ready costs one round per
# period per worker, and a change of state shows within the period.
READY_TTL_MS: Final = 1000
READINESS: Final = "ready"  # the one key of the readiness cache

Probe = Callable[[], Awaitable[str | None]]
# The probes' results: per check, None when it passed, else why not.
Checks = dict[str, str | None]


def json_response(status: int, document: object) -> Response:
    return Response(status, [JSON, NO_STORE], orjson.dumps(document))


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class Admin:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        required: Iterable[str] = (),
        clock_ms: Callable[[], float] = monotonic_ms,
        ready_ttl_ms: float = READY_TTL_MS,
    ) -> None:
        self.started = time.monotonic()
        self.probes = dict(probes)
        # Checks whose failure makes /ready 503 (``readiness.require``); the rest are reported.
        self.required = frozenset(required)
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

    async def live(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def health(self, request: Request) -> Response:
        return json_response(
            200, {"status": "healthy", "uptime": round(time.monotonic() - self.started, 3)}
        )

    async def ready(self, request: Request) -> Response:
        status, document = await self.readiness_document(reasons=False)
        return json_response(status, document)

    async def readiness_document(self, reasons: bool) -> tuple[int, dict[str, object]]:
        """/ready's status and body. Why a check failed may name an internal host (Redis's
        address, an instance's): only the admin listener (``reasons``) tells it."""
        if self.draining:
            return 503, {
                "status": "draining",
                "checks": {"shutdown": "draining"},
                "failed": ["shutdown"],
                "required": sorted(self.required),
            }
        results = await self.readiness.get(READINESS)
        assert results is not None  # _probe_all always answers
        checks = {
            name: "ok" if reason is None else (reason if reasons else "failed")
            for name, reason in results.items()
        }
        failed = [name for name, reason in results.items() if reason is not None]
        blocking = [name for name in failed if name in self.required]
        document: dict[str, object] = {
            "status": "not ready" if blocking else "ready",
            "checks": checks,
            "failed": failed,
            "required": sorted(self.required),
        }
        return (503 if blocking else 200), document

    async def _probe_all(self, key: str) -> Checks:
        names = list(self.probes)
        results = await asyncio.gather(*[self.probes[name]() for name in names])
        return dict(zip(names, results, strict=True))
