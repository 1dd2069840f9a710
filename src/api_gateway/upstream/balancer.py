"""Choosing an instance of a service for one attempt.

    all instances ─▶ available (healthy, not ejected) ─▶ not yet tried by this request ─▶ strategy

If no instance is available the gateway tries them all anyway (panic mode) rather than fail
every request on a health signal that may be wrong. Strategies are pure: randomness comes in
as a function, and the consistent-hash ring is rebuilt only when the instance set changes.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from api_gateway.config.settings import BalancerConfig
from api_gateway.types import Request
from api_gateway.upstream.instances import ServiceInstances, UpstreamInstance

RING_POINTS: Final = 160  # per instance: keeps each instance's share of keys within a few percent


class Strategy(Protocol):
    def choose(
        self, candidates: Sequence[UpstreamInstance], request: Request
    ) -> UpstreamInstance: ...


class RoundRobin:
    def __init__(self) -> None:
        self.turn = 0

    def choose(self, candidates: Sequence[UpstreamInstance], request: Request) -> UpstreamInstance:
        self.turn += 1
        return candidates[self.turn % len(candidates)]


class LeastConnections:
    """The instance with fewest requests in flight; ties go round the instances in turn."""

    def __init__(self) -> None:
        self.turn = 0

    def choose(self, candidates: Sequence[UpstreamInstance], request: Request) -> UpstreamInstance:
        self.turn += 1
        count = len(candidates)
        best = candidates[self.turn % count]
        for step in range(1, count):
            candidate = candidates[(self.turn + step) % count]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best


class Random:
    def __init__(self, randrange: Callable[[int], int]) -> None:
        self.randrange = randrange

    def choose(self, candidates: Sequence[UpstreamInstance], request: Request) -> UpstreamInstance:
        return candidates[self.randrange(len(candidates))]


def point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class ConsistentHash:
    """A hash ring over every instance; a key goes to the first candidate at or after its
    point, so losing one of N instances moves only the keys that instance held (about 1/N)."""

    def __init__(self, service: ServiceInstances, key: Callable[[Request], str]) -> None:
        self.service, self.key = service, key
        self.version = -1
        self.points: list[int] = []
        self.owners: list[UpstreamInstance] = []

    def choose(self, candidates: Sequence[UpstreamInstance], request: Request) -> UpstreamInstance:
        if self.version != self.service.version:
            self._build()
        allowed = set(map(id, candidates))
        start = bisect.bisect_left(self.points, point(self.key(request)))
        count = len(self.points)
        for step in range(count):
            owner = self.owners[(start + step) % count]
            if id(owner) in allowed:
                return owner
        return candidates[0]

    def _build(self) -> None:
        ring = sorted(
            (point(f"{endpoint.authority}#{i}"), n)
            for n, endpoint in enumerate(self.service.endpoints)
            for i in range(RING_POINTS)
        )
        self.points = [p for p, _ in ring]
        self.owners = [self.service.endpoints[n] for _, n in ring]
        self.version = self.service.version


def hash_key(spec: str) -> Callable[[Request], str]:
    """``user`` (the token's subject, else the client IP), ``header:<name>``, ``cookie:<name>``."""
    source, _, name = spec.partition(":")
    if source == "header":
        header = name.lower().encode("latin-1")

        def by_header(request: Request) -> str:
            # Every line, joined (RFC 9110 §5.3): a second line moves the key, never is ignored.
            value = request.header_list(header)
            return value.decode("latin-1") if value is not None else request.client_ip

        return by_header
    if source == "cookie":
        return lambda request: cookie(request, name) or request.client_ip
    return lambda request: request.claims.user_id if request.claims else request.client_ip


def cookie(request: Request, name: str) -> str | None:
    header = request.header_list(b"cookie")
    if header is None:
        return None
    for pair in header.decode("latin-1").replace(",", ";").split(";"):
        key, _, value = pair.strip().partition("=")
        if key == name:
            return value
    return None


class Balancer:
    def __init__(self, service: ServiceInstances, strategy: Strategy) -> None:
        self.service, self.strategy = service, strategy
        self.panicking = False

    def pick(
        self, request: Request, now_ms: float, tried: Sequence[UpstreamInstance]
    ) -> UpstreamInstance:
        endpoints = self.service.endpoints
        if len(endpoints) == 1 and not tried:
            only = endpoints[0]
            if only.healthy and now_ms >= only.ejected_until:
                self.panicking = False
                return only
        available = [e for e in endpoints if e.available(now_ms)]
        self.panicking = not available
        if self.panicking:
            available = list(endpoints)
        fresh = [e for e in available if e not in tried] if tried else available
        return self.strategy.choose(fresh or available, request)


def build_balancer(
    config: BalancerConfig, service: ServiceInstances, randrange: Callable[[int], int]
) -> Balancer:
    strategies: dict[str, Callable[[], Strategy]] = {
        "round_robin": RoundRobin,
        "least_connections": LeastConnections,
        "random": lambda: Random(randrange),
        "consistent_hash": lambda: ConsistentHash(service, hash_key(config.hash_key)),
    }
    return Balancer(service, strategies[config.strategy]())
