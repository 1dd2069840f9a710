"""Circuit breaking per service: fail fast with 503 while a service is failing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from api_gateway.errors import BadGateway, CircuitOpen, UpstreamTimeout
from api_gateway.types import Handler, Request, Response
from api_gateway.upstream.breaker import Breaker, State

log = logging.getLogger("api_gateway.breaker")

# Statuses that mean the service, not the request, is at fault.
FAILURE_STATUSES = frozenset({500, 502, 503, 504})


class CircuitBreaker:
    def __init__(self, service: str, breaker: Breaker, clock_ms: Callable[[], float]) -> None:
        self.service, self.breaker, self.clock_ms = service, breaker, clock_ms

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        breaker = self.breaker
        if not breaker.allow(self.clock_ms()):
            raise CircuitOpen(f"{self.service}-service is failing; try again shortly")
        before = breaker.state
        try:
            response = await call_next(request)
        except (BadGateway, UpstreamTimeout):
            self._record(False, before)
            raise
        except BaseException:
            # Not the service's fault (client went away, bad body): a trial must not stay taken.
            if breaker.state is State.HALF_OPEN:
                breaker.trial_in_flight = False
            raise
        self._record(response.status not in FAILURE_STATUSES, before)
        return response

    def _record(self, success: bool, before: State) -> None:
        self.breaker.record(success, self.clock_ms())
        after = self.breaker.state
        if after is not before:
            log.warning(
                "circuit %s", after.value, extra={"service": self.service, "from": before.value}
            )
