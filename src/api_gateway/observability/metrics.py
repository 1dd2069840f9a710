"""Prometheus metrics kept in plain dicts: a counter and a latency histogram per route."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0


class Metrics:
    def __init__(self, gauges: Callable[[], list[str]] | None = None) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.gauges = gauges or list

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def render(self) -> bytes:
        lines = [
            "# HELP gateway_requests_total Requests answered, by route, method and status.",
            "# TYPE gateway_requests_total counter",
        ]
        for (route, method, status), count in sorted(self.requests.items()):
            labels = f'route="{route}",method="{method}",status="{status}"'
            lines.append(f"gateway_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP gateway_request_duration_seconds Time to the response head, by route.",
            "# TYPE gateway_request_duration_seconds histogram",
        ]
        for route, histogram in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, "+Inf"), histogram.counts, strict=True):
                cumulative += count
                lines.append(
                    f'gateway_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} '
                    f"{cumulative}"
                )
            lines.append(f'gateway_request_duration_seconds_sum{{route="{route}"}} {histogram.sum}')
            lines.append(f'gateway_request_duration_seconds_count{{route="{route}"}} {cumulative}')
        lines += self.gauges()
        return ("\n".join(lines) + "\n").encode()
