"""The canary after a hostile request: the next request on the same socket is answered as
itself, or the socket is closed. Nothing else (a smuggled request, a body taken for a request)
may come back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from support.client import IncompleteResponse, RawConnection, RawResponse, build_request
from support.gateway import Fleet

CANARY_TARGET = "/api/v1/search/canary"
CANARY = build_request("GET", CANARY_TARGET)
READ_TIMEOUT_S = 3.0
MAX_RESPONSES = 8
SETTLE_S = 0.2


@dataclass
class Exchange:
    """What came back on one socket: the answers before the canary, and the canary's fate."""

    responses: list[RawResponse] = field(default_factory=list)
    canary: RawResponse | None = None
    closed: bool = False

    @property
    def first(self) -> RawResponse:
        assert self.responses, "the gateway answered nothing before closing"
        return self.responses[0]


def is_canary(response: RawResponse) -> bool:
    return response.status == 200 and CANARY_TARGET.encode() in response.body


def exchange(port: int, raw: bytes, answers: int = 1) -> Exchange:
    """Send ``raw``, read up to ``answers`` responses, then send the canary and read its fate."""
    result = Exchange()
    with RawConnection(port, timeout_s=READ_TIMEOUT_S) as connection:
        connection.send_tolerant(raw)
        for _ in range(answers):
            response = _read(connection)
            if response is None:
                result.closed = True
                return result
            result.responses.append(response)
        connection.send_tolerant(CANARY)
        for _ in range(MAX_RESPONSES):
            response = _read(connection)
            if response is None:
                result.closed = True
                return result
            if is_canary(response):
                result.canary = response
                return result
            result.responses.append(response)
    raise AssertionError(f"too many responses: {[r.status for r in result.responses]}")


def _read(connection: RawConnection) -> RawResponse | None:
    """One response, or None once the gateway has closed the connection."""
    try:
        return connection.read_response()
    except IncompleteResponse:
        return None


def assert_canary_safe(result: Exchange) -> None:
    """The canary was answered as itself, or the socket was closed without another answer."""
    assert result.canary is not None or result.closed, [r.status for r in result.responses]


def targets_seen(fleet: Fleet) -> list[str]:
    """Every request target any upstream received (after a short settle for a late arrival)."""
    time.sleep(SETTLE_S)
    return [r.target for upstream in fleet.upstreams.values() for r in upstream.requests]
