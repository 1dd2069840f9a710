"""The per-request metric: requests and their latency by route, method and status class.

One dict lookup per request, keyed by a tuple of what is already at hand (the route template,
never the raw path, so the label set stays bounded); the service label and the status class's
name are filled in at scrape time, not per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Final

from api_gateway.observability.exposition import (
    BUCKETS,
    COUNTER,
    HISTOGRAM,
    Family,
    Histogram,
    Labels,
)

# The gateway's own answers (admin endpoints, unmatched paths) have no service.
NO_SERVICE: Final = "gateway"


class Metrics:
    def __init__(self, services: Mapping[str, str] | None = None) -> None:
        self.services = services or {}  # route template -> service name
        self.requests: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status // 100)
        histogram = self.requests.get(key)
        if histogram is None:
            histogram = self.requests[key] = Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def collect(self) -> list[Family]:
        counts: dict[Labels, float] = {}
        latency: dict[Labels, list[float]] = {}
        for (route, method, status_class), histogram in self.requests.items():
            labels = (
                ("route", route),
                ("service", self.services.get(route, NO_SERVICE)),
                ("method", method),
                ("status_class", f"{status_class}xx"),
            )
            counts[labels] = sum(histogram.counts)
            latency[labels] = histogram.sample()
        return [
            (
                "gateway_requests_total",
                COUNTER,
                "Requests answered, by route template, service, method and status class.",
                counts,
            ),
            (
                "gateway_request_duration_seconds",
                HISTOGRAM,
                "Time to the response head, by route template, service, method and status class.",
                latency,
            ),
        ]
