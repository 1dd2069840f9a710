"""The per-request metric: requests, their latency and body bytes by route, method and status.

One dict lookup per request, keyed by a tuple of what is already at hand (the route template,
never the raw path, so the label set stays bounded, and the status as answered); the service
label, the status's ``code`` label and its class are filled in at scrape time, not per request.

The ``code`` label is the exact status for the codes HTTP defines (``CODES``); any other status
an upstream may send is folded into its class (``code="5xx"``), so at most ``len(CODES)`` + 5
values per route and method. A new exact status meets the fold once, when its key is first
seen: the key maps to the entry of its folded code from then on.
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
# The statuses the IANA HTTP status code registry names (RFC 9110 and its companions).
CODES: Final = frozenset(
    {100, 101, 102, 103}
    | {200, 201, 202, 203, 204, 205, 206, 207, 208, 226}
    | {300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 418)) | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451}
    | {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}
)  # fmt: skip


def fold(status: int) -> int:
    """The status itself when HTTP names it, else its class (1 to 5; 0 for anything else)."""
    if status in CODES:
        return status
    return status // 100 if 100 <= status < 600 else 0


def code_label(folded: int) -> str:
    """``"404"`` for a named status, ``"4xx"`` for a folded one, ``"other"`` for 0."""
    if folded >= 100:
        return str(folded)
    return f"{folded}xx" if folded else "other"


def class_label(folded: int) -> str:
    return f"{folded // 100 if folded >= 100 else folded}xx" if folded else "other"


class Exchanges:
    """One route, method and status: the latency histogram and the body bytes both ways."""

    __slots__ = ("latency", "received", "sent")

    def __init__(self) -> None:
        self.latency = Histogram()
        self.received = 0
        self.sent = 0


class Metrics:
    def __init__(self, services: Mapping[str, str] | None = None) -> None:
        self.services = services or {}  # route template -> service name
        # Keyed by the status as answered (a lookup per request), each entry shared by every
        # key with the same folded status; ``folded`` holds each entry once, for the scrape.
        self.requests: dict[tuple[str, str, int], Exchanges] = {}
        self.folded: dict[tuple[str, str, int], Exchanges] = {}

    def observe(
        self, route: str, method: str, status: int, seconds: float, received: int = 0, sent: int = 0
    ) -> Exchanges:
        """Count one request; its entry is returned, for a streamed body's bytes to be added
        when it ends."""
        key = (route, method, status)
        entry = self.requests.get(key)
        if entry is None:
            entry = self._entry(key)
        latency = entry.latency
        latency.counts[bisect_left(BUCKETS, seconds)] += 1
        latency.sum += seconds
        entry.received += received
        entry.sent += sent
        return entry

    def _entry(self, key: tuple[str, str, int]) -> Exchanges:
        route, method, status = key
        folded_key = (route, method, fold(status))
        entry = self.folded.get(folded_key)
        if entry is None:
            entry = self.folded[folded_key] = Exchanges()
        self.requests[key] = entry
        return entry

    def collect(self) -> list[Family]:
        counts: dict[Labels, float] = {}
        latency: dict[Labels, list[float]] = {}
        received: dict[Labels, float] = {}
        sent: dict[Labels, float] = {}
        for (route, method, folded), entry in self.folded.items():
            service = self.services.get(route, NO_SERVICE)
            status_class = class_label(folded)
            labels = (
                ("route", route),
                ("service", service),
                ("method", method),
                ("code", code_label(folded)),
                ("status_class", status_class),
            )
            histogram = entry.latency
            counts[labels] = sum(histogram.counts)
            # Latency by class, not by code: a histogram's buckets multiply every label value.
            by_class = (*labels[:3], labels[4])
            sample = histogram.sample()
            current = latency.get(by_class)
            latency[by_class] = (
                sample if current is None else [a + b for a, b in zip(current, sample, strict=True)]
            )
            route_labels = labels[:3]
            received[route_labels] = received.get(route_labels, 0) + entry.received
            sent[route_labels] = sent.get(route_labels, 0) + entry.sent
        return [
            (
                "gateway_requests_total",
                COUNTER,
                "Requests answered, by route template, service, method, status code (the exact"
                " code when HTTP names it, else its class) and status class.",
                counts,
            ),
            (
                "gateway_request_duration_seconds",
                HISTOGRAM,
                "Time to the response head, by route template, service, method and status class.",
                latency,
            ),
            (
                "gateway_request_body_bytes_total",
                COUNTER,
                "Request body bytes received from clients, by route template, service and method.",
                received,
            ),
            (
                "gateway_response_body_bytes_total",
                COUNTER,
                "Response body bytes sent to clients (a stream's when it ends), by route"
                " template, service and method.",
                sent,
            ),
        ]
