"""Service discovery: which instances each service has, refreshed in the background.

Static instances come from the configuration (``services.<name>.url`` or ``<NAME>_SERVICE_URL``,
comma-separated lists). With ``redis.url`` set and ``discovery.registry`` true, the Redis registry
(``upstream.registry``) is read every ``discovery.cache_ttl_ms``: a service whose instances are
registered there is routed to them; a service with none registered falls back to its static
instances; when Redis cannot be read, every service keeps the instances it last had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from api_gateway.config.settings import GatewayConfig, Instance
from api_gateway.stores import StoreUnavailable
from api_gateway.timers import PatientTimeout
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.registry import open_registry

log = logging.getLogger("api_gateway.discovery")
JITTER: Final = 0.1  # refreshes of many gateways spread over +-10% of the interval
REGISTRY_TIMEOUT_S: Final = 0.5  # a registry read must never hold a refresh round for long


class InstanceSource(Protocol):
    """Where registered instances are read from: the Redis ``Registry``."""

    async def discover(self, service: str) -> list[Instance]: ...

    async def close(self) -> None: ...


def choose_instances(
    registered: Sequence[Instance] | None,
    current: Sequence[Instance],
    static: Sequence[Instance],
) -> Sequence[Instance]:
    """The instance set after one registry read; ``registered`` is None when it failed.

    A failed read keeps what the gateway has (the last known set, which is the static one until
    the registry first answered); an empty registry means nobody heartbeats, so static config.
    """
    if registered is None:
        return current or static
    return registered or static


class Discovery:
    def __init__(
        self,
        services: Mapping[str, ServiceInstances],
        static: Mapping[str, Sequence[Instance]],
        registry: InstanceSource | None,
        cache_ttl_ms: int,
        now_ms: Callable[[], float],
    ) -> None:
        self.services, self.static, self.registry = services, static, registry
        self.every_s = cache_ttl_ms / 1000
        self.now_ms = now_ms
        self.outage: str | None = None  # the reason while the registry cannot be read
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read the registry now and then every ``cache_ttl_ms``; static only without one."""
        if self.registry is not None and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def instances(self, service: str) -> list[Instance]:
        return [endpoint.instance for endpoint in self.services[service].endpoints]

    def get_healthy_instances(self, service: str) -> list[Instance]:
        """The instances requests may go to now: up by health check, not ejected."""
        now = self.now_ms()
        return [e.instance for e in self.services[service].endpoints if e.available(now)]

    async def refresh(self) -> None:
        """One read of the registry for every service, applied as ``choose_instances`` says."""
        if self.registry is None:
            return
        names = list(self.services)
        results = await asyncio.gather(*[self._read(name) for name in names])
        failures = [r for r in results if isinstance(r, str)]
        for name, result in zip(names, results, strict=True):
            registered = None if isinstance(result, str) else result
            endpoints = self.services[name]
            current = [endpoint.instance for endpoint in endpoints.endpoints]
            if endpoints.update(choose_instances(registered, current, self.static[name])):
                chosen = [endpoint.authority for endpoint in endpoints.endpoints]
                log.info("instances changed", extra={"service": name, "instances": chosen})
        self._note_outage(failures[0] if failures else None)

    async def _read(self, service: str) -> list[Instance] | str:
        """The registered instances, or why they could not be read."""
        assert self.registry is not None
        try:
            # A paused loop is not an unreachable registry (see ``timers``).
            async with PatientTimeout(REGISTRY_TIMEOUT_S):
                return await self.registry.discover(service)
        except TimeoutError:
            return f"registry read for {service} timed out"
        except StoreUnavailable as exc:
            return str(exc)

    def _note_outage(self, reason: str | None) -> None:
        # Once per outage and once on recovery: a refresh every few seconds must not flood logs.
        if reason is not None and self.outage is None:
            log.warning("service registry unavailable, keeping the known instances: %s", reason)
        elif reason is None and self.outage is not None:
            log.warning("service registry available again")
        self.outage = reason

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the loop must outlive any one bad round
                log.exception("service registry refresh failed")
            await asyncio.sleep(self.every_s * random.uniform(1 - JITTER, 1 + JITTER))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.registry is not None:
            await self.registry.close()


def open_discovery(
    config: GatewayConfig, services: Mapping[str, ServiceInstances], now_ms: Callable[[], float]
) -> Discovery:
    registry: InstanceSource | None = None
    if config.redis_url is not None and config.discovery.registry:
        registry = open_registry(config)
    static = {name: service.instances for name, service in config.services.items()}
    return Discovery(services, static, registry, config.discovery.cache_ttl_ms, now_ms)
