"""One deadline per request, shared by every attempt, every retry wait and every step.

The deadline comes from the most specific setting (endpoint, then route, then service, then
``timeouts.default_ms``) and what is left of it is passed upstream in
``x-request-deadline-ms`` so a service can stop work nobody will wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from api_gateway.errors import DeadlineExceeded
from api_gateway.timers import patiently

# A step's bound is the client's time: a pause of the loop gives it one more bound, no more.
STEP_EXTENSIONS: Final = 1

T = TypeVar("T")


class Deadline:
    __slots__ = ("clock_ms", "expires_ms")

    def __init__(self, budget_ms: float, clock_ms: Callable[[], float]) -> None:
        self.clock_ms = clock_ms
        self.expires_ms = clock_ms() + budget_ms

    def remaining_ms(self) -> float:
        return self.expires_ms - self.clock_ms()


class TimeoutController:
    """Multi-step work under one deadline: each step gets what is left, or less if capped.

    Used where the gateway itself makes several upstream calls for one client request.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def step_budget_ms(self, cap_ms: float | None = None) -> float:
        """The time a step may take now; ``DeadlineExceeded`` if nothing is left."""
        remaining = self.deadline.remaining_ms()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before this step")
        return remaining if cap_ms is None else min(remaining, cap_ms)

    async def run(self, step: Awaitable[T], cap_ms: float | None = None) -> T:
        try:
            budget_s = self.step_budget_ms(cap_ms) / 1000
        except DeadlineExceeded:
            if asyncio.iscoroutine(step):
                step.close()  # never started: say so, rather than leave it un-awaited
            raise
        try:
            return await patiently(step, budget_s, max_extensions=STEP_EXTENSIONS)
        except TimeoutError as exc:
            raise DeadlineExceeded("a step did not finish within the request's deadline") from exc
