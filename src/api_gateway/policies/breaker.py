"""Circuit breaking per service: fail fast with 503 while a service is failing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from api_gateway.errors import BadGateway, CircuitOpen, UpstreamTimeout
from api_gateway.types import Handler, Request, Response
from api_gateway.upstream.breaker import Breaker, Event, Outcome

log = logging.getLogger("api_gateway.breaker")

# Statuses that mean the service, not the request, is at fault.
FAILURE_STATUSES = frozenset({500, 502, 503, 504})


class CircuitBreaker:
    def __init__(self, service: str, breaker: Breaker, clock_ms: Callable[[], float]) -> None:
        self.service, self.breaker, self.clock_ms = service, breaker, clock_ms

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        breaker = self.breaker
        allowed, events = breaker.allow(self.clock_ms())
        self._log(events)
        if not allowed:
            raise CircuitOpen(f"{self.service}-service is failing; try again shortly")
        try:
            response = await call_next(request)
        except UpstreamTimeout:
            self._record(Outcome.TIMEOUT)
            raise
        except BadGateway:
            self._record(Outcome.FAILURE)
            raise
        except BaseException:
            self._record(Outcome.IGNORED)
            raise
        failed = response.status in FAILURE_STATUSES
        self._record(Outcome.FAILURE if failed else Outcome.SUCCESS)
        return response

    def _record(self, outcome: Outcome) -> None:
        self._log(self.breaker.record(outcome, self.clock_ms()))

    def _log(self, events: tuple[Event, ...]) -> None:
        for event in events:
            if event in (Event.OPEN, Event.CLOSE, Event.HALF_OPEN):
                log.warning("circuit %s", event.value, extra={"service": self.service})
