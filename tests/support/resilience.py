"""Building blocks for the resilience unit tests: settings, a manual clock, a scripted pool."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

from api_gateway.config.settings import (
    BalancerConfig,
    BreakerConfig,
    HealthCheckConfig,
    Instance,
    OutlierConfig,
    RetryConfig,
    ServiceConfig,
)
from api_gateway.types import Body, Request, Response
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.service import UpstreamService

T = TypeVar("T")
START = 1_000_000.0


def service_config(instances: int = 2, **sections: Any) -> ServiceConfig:
    defaults = ServiceConfig(
        name="ticket",
        instances=tuple(Instance(f"10.0.0.{n + 1}", 3004) for n in range(instances)),
        timeout_ms=10_000,
        circuit_breaker=BreakerConfig(50, 30_000, 10),
        retry=RetryConfig(2, 100, 2_000, None, 20, 3),
        load_balancer=BalancerConfig("round_robin"),
        outlier=OutlierConfig(5, 30_000, 50),
        health_check=HealthCheckConfig(True, "/health", 120_000, 5_000, 2, 3),
    )
    return dataclasses.replace(defaults, **sections)


def upstream_service(config: ServiceConfig, seed: int = 7) -> UpstreamService:
    return UpstreamService(
        config, ServiceInstances(config.name, config.instances), random.Random(seed)
    )


class Clock:
    def __init__(self, now_ms: float = START) -> None:
        self.now_ms = now_ms
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now_ms

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds * 1000)
        self.now_ms += seconds * 1000


class Call:
    __slots__ = ("address", "body", "head", "method", "timeout_s")

    def __init__(
        self, address: tuple[str, int], head: bytes, body: Body, timeout_s: float, method: str
    ) -> None:
        self.address, self.head, self.body = address, head, body
        self.timeout_s, self.method = timeout_s, method

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b": ")
            if key == name:
                return value
        return None


class ScriptedPool:
    """Answers attempts in order from a script of responses and errors; records each attempt.

    An entry may take time on the shared clock: ``(outcome, ms)``.
    """

    def __init__(self, clock: Clock, *script: Response | BaseException | tuple[Any, float]):
        self.clock, self.script, self.calls = clock, list(script), list[Call]()

    async def request(
        self,
        address: tuple[str, int],
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
        upgrade: bool = False,
        stream_idle_s: float = 0.0,
    ) -> Response:
        self.calls.append(Call(address, head, body, timeout_s, method))
        outcome = self.script.pop(0) if self.script else Response(200, [], b"ok")
        if isinstance(outcome, tuple):
            outcome, took_ms = outcome
            self.clock.now_ms += took_ms
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, Response)
        return outcome

    @property
    def addresses(self) -> list[str]:
        return [host for host, _ in (call.address for call in self.calls)]


def request(method: str = "GET", body: Body = b"", headers: list[Any] | None = None) -> Request:
    r = Request(method, b"/api/v1/tickets/1", headers or [], body, "192.0.2.1")
    r.path = "/api/v1/tickets/1"
    return r


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())
