"""A service's instances as the gateway sees them: address, load, health and ejection.

The instance set changes at run time (the Redis registry, `<NAME>_SERVICE_URL` lists); an
instance that stays keeps its state (in-flight count, ejections, health) across updates.
"""

from __future__ import annotations

from collections.abc import Iterable

from api_gateway.config.settings import Instance

Address = tuple[str, int]


class UpstreamInstance:
    """One instance of a service and what the gateway has learned about it."""

    __slots__ = (
        "address",
        "authority",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "healthy",
        "host_line",
        "in_flight",
        "instance",
    )

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.address: Address = (instance.host, instance.port)
        self.authority = instance.authority
        self.host_line = f"host: {instance.authority}".encode()
        self.in_flight = 0
        # The active health check's verdict; an instance is presumed up until a check fails.
        self.healthy = True
        # Passive health (outlier detection), on the gateway's millisecond clock.
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0

    def available(self, now_ms: float) -> bool:
        return self.healthy and now_ms >= self.ejected_until

    def snapshot(self, now_ms: float) -> dict[str, object]:
        return {
            "instance": self.authority,
            "healthy": self.healthy,
            "ejected": now_ms < self.ejected_until,
            "in_flight": self.in_flight,
            "ejections": self.ejections,
        }


class ServiceInstances:
    """The current instances of one service; ``endpoints`` is replaced, never mutated."""

    def __init__(self, name: str, instances: Iterable[Instance]) -> None:
        self.name = name
        self.endpoints: tuple[UpstreamInstance, ...] = ()
        self.version = 0
        self.update(instances)

    def update(self, instances: Iterable[Instance]) -> bool:
        """Take a new instance set; return whether it differs from the current one."""
        known = {endpoint.instance: endpoint for endpoint in self.endpoints}
        wanted = list(dict.fromkeys(instances))
        if not wanted or wanted == [e.instance for e in self.endpoints]:
            return False
        self.endpoints = tuple(known.get(i) or UpstreamInstance(i) for i in wanted)
        self.version += 1
        return True

    def snapshot(self, now_ms: float) -> list[dict[str, object]]:
        return [endpoint.snapshot(now_ms) for endpoint in self.endpoints]
