"""Passive health: an instance that keeps failing is ejected for a while, longer each time.

N consecutive failures (connect errors, resets, timeouts, 5xx) eject an instance for
``base_ejection_ms`` times its number of ejections; the multiplier decays by one for every
``base_ejection_ms`` the instance then serves without being ejected. At most
``max_ejection_pct`` of a service's instances (but always one) are ejected at once, so a
service-wide failure is left to the circuit breaker instead of emptying the pool.
"""

from __future__ import annotations

from api_gateway.config.settings import OutlierConfig
from api_gateway.upstream.instances import ServiceInstances, UpstreamInstance


class OutlierDetector:
    def __init__(self, config: OutlierConfig, service: ServiceInstances) -> None:
        self.limit = config.consecutive_failures
        self.base_ms = config.base_ejection_ms
        self.max_share = config.max_ejection_pct / 100
        self.service = service

    def success(self, endpoint: UpstreamInstance, now_ms: float) -> None:
        endpoint.consecutive_failures = 0
        if endpoint.ejections and now_ms - endpoint.ejected_until >= self.base_ms:
            endpoint.ejections -= 1
            endpoint.ejected_until = now_ms  # the next decay needs another quiet period

    def failure(self, endpoint: UpstreamInstance, now_ms: float) -> bool:
        """Count a failure; return whether it ejected the instance."""
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures < self.limit or now_ms < endpoint.ejected_until:
            return False
        endpoints = self.service.endpoints
        ejected = sum(1 for e in endpoints if now_ms < e.ejected_until)
        if ejected >= max(1, int(len(endpoints) * self.max_share)):
            return False
        endpoint.ejections += 1
        endpoint.ejected_until = now_ms + self.base_ms * endpoint.ejections
        endpoint.consecutive_failures = 0
        return True
