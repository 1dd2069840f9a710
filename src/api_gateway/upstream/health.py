"""Active health checks: ``GET <path>`` to every instance, in the background and on demand.

A 2xx within ``timeout_ms`` is a pass. ``unhealthy_threshold`` failures in a row mark an
instance down (``UpstreamInstance.healthy``, which the balancer honours) and
``healthy_threshold`` passes in a row mark it up again; single blips change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from api_gateway.config.settings import HealthCheckConfig
from api_gateway.errors import GatewayError
from api_gateway.http.wire import header_lines
from api_gateway.signing import Signer
from api_gateway.timers import PatientTimeout
from api_gateway.types import Body, Pool
from api_gateway.upstream.instances import ServiceInstances, UpstreamInstance

log = logging.getLogger("api_gateway.health")
JITTER: Final = 0.2  # checks of many services and gateways spread over +-20% of the interval
USER_AGENT: Final = "api-gateway-health"


@dataclass(frozen=True, slots=True)
class Streak:
    """An instance's verdict and the run of identical results that may overturn it."""

    healthy: bool
    passes: int = 0
    failures: int = 0


def after_check(
    streak: Streak, passed: bool, healthy_threshold: int, unhealthy_threshold: int
) -> Streak:
    if passed:
        passes = streak.passes + 1
        return Streak(streak.healthy or passes >= healthy_threshold, passes, 0)
    failures = streak.failures + 1
    return Streak(streak.healthy and failures < unhealthy_threshold, 0, failures)


def probe_head(path: str, authority: str, signer: Signer | None = None) -> bytes:
    head = (
        f"GET {path} HTTP/1.1\r\nhost: {authority}\r\nx-gateway-internal: true\r\n"
        f"user-agent: {USER_AGENT}\r\n"
    ).encode()
    if signer is not None:  # signed per probe: each has its own nonce
        head += header_lines(signer.headers("GET", path.encode("ascii"), b""))
    return head + b"\r\n"


async def _drain(body: Body) -> None:
    if isinstance(body, bytes):
        return
    drained = False
    try:
        async for _ in body:
            pass
        drained = True
    finally:
        if not drained:
            body.abort()  # cut short by the timeout: the connection must not be reused


class HealthChecker:
    """Checks every instance of each service whose ``health_check.enabled`` is true."""

    def __init__(
        self,
        services: Mapping[str, ServiceInstances],
        configs: Mapping[str, HealthCheckConfig],
        pool: Pool,
        signer: Signer | None = None,
    ) -> None:
        self.services, self.pool, self.signer = services, pool, signer
        self.configs = {name: c for name, c in configs.items() if c.enabled and name in services}
        self.streaks: dict[str, dict[UpstreamInstance, Streak]] = {
            name: {} for name in self.configs
        }
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._run(name)) for name in self.configs]

    async def perform_health_check(self, service: str | None = None) -> dict[str, bool]:
        """Check now (one service or all); each verdict is keyed ``<service>/<host:port>``."""
        names = [service] if service is not None else list(self.configs)
        verdicts: dict[str, bool] = {}
        for name, result in zip(names, await asyncio.gather(*map(self.check, names)), strict=True):
            verdicts.update({f"{name}/{authority}": up for authority, up in result.items()})
        return verdicts

    async def check(self, service: str) -> dict[str, bool]:
        """One round over the service's current instances; applies and returns the verdicts."""
        config = self.configs[service]
        endpoints = self.services[service].endpoints
        reasons = await asyncio.gather(*[self.probe(e, config) for e in endpoints])
        known = self.streaks[service]
        streaks: dict[
            UpstreamInstance, Streak
        ] = {}  # instances that left the service are forgotten
        for endpoint, reason in zip(endpoints, reasons, strict=True):
            before = known.get(endpoint) or Streak(endpoint.healthy)
            after = after_check(
                before, reason is None, config.healthy_threshold, config.unhealthy_threshold
            )
            streaks[endpoint] = after
            self._apply(service, endpoint, after.healthy, reason)
        self.streaks[service] = streaks
        return {endpoint.authority: endpoint.healthy for endpoint in endpoints}

    async def probe(self, endpoint: UpstreamInstance, config: HealthCheckConfig) -> str | None:
        """None when the instance passed, else why it failed."""
        timeout_s = config.timeout_ms / 1000
        head = probe_head(config.path, endpoint.authority, self.signer)
        try:
            # A paused loop is not a failing instance (see ``timers``).
            async with PatientTimeout(timeout_s):
                response = await self.pool.request(
                    endpoint.address, head, b"", False, timeout_s, "GET"
                )
                await _drain(response.body)
        except TimeoutError:
            return f"no answer within {config.timeout_ms} ms"
        except GatewayError as exc:
            return str(exc) or type(exc).__name__
        if not 200 <= response.status < 300:
            return f"answered {response.status}"
        return None

    def _apply(
        self, service: str, endpoint: UpstreamInstance, healthy: bool, reason: str | None
    ) -> None:
        if healthy == endpoint.healthy:
            return
        endpoint.healthy = healthy
        extra = {"service": service, "instance": endpoint.authority}
        if healthy:
            log.warning("instance passed its health checks, marked up", extra=extra)
        else:
            log.warning("instance failed its health checks, marked down: %s", reason, extra=extra)

    async def _run(self, service: str) -> None:
        every_s = self.configs[service].interval_ms / 1000
        while True:
            # The first check too waits one interval, so a start-up does not hammer services.
            await asyncio.sleep(every_s * random.uniform(1 - JITTER, 1 + JITTER))
            try:
                await self.check(service)
            except Exception:  # the loop must outlive any one bad round
                log.exception("health check round failed", extra={"service": service})

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []
