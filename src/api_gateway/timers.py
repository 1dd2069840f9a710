"""Deadlines that forgive the event loop its own pauses.

A timer on a busy loop fires late: a 120 ms JSON body, a slow callback, a GC pass. For that long
nothing was read, so a peer's answer may be waiting in the socket, and ``asyncio.timeout`` would
still cancel the wait in the same tick, before the loop could read it: a healthy peer is counted
as failing (a cache hit turned into a miss, an instance marked down, a venue lookup answered 503).

So a timer that fires ``LOOP_LATE_S`` or more after it was due, or that finds the answer ready,
gives the wait one more bound, counted from now: the peer gets a full bound of time the loop was
free to notice its answer. At most ``MAX_EXTENSIONS`` times per wait, so a loop that is busy all
the time still ends every wait, within (1 + MAX_EXTENSIONS) bounds plus the pauses themselves.
A timer that fires on time over nothing ready is a peer that did not answer.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, TypeVar

T = TypeVar("T")

# A timer this late found the loop busy, not the peer slow (a free loop is late by microseconds).
LOOP_LATE_S: Final = 0.005
MAX_EXTENSIONS: Final = 3


def unread(transport: asyncio.BaseTransport | None) -> bool:
    """Whether ``transport``'s socket holds bytes (or an end) the loop has not delivered yet:
    the ``ready`` of a deadline over a connection. One poll, asked only of a late deadline."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def forgives(
    extensions: int,
    late_s: float,
    ready: Callable[[], bool] | None = None,
    max_extensions: int = MAX_EXTENSIONS,
) -> bool:
    """Whether a deadline that fired ``late_s`` after it was due, having been extended
    ``extensions`` times, gets another bound. ``ready`` says whether the answer is already there
    unread (asked only when the timer was on time: it may cost a system call)."""
    if extensions >= max_extensions:
        return False
    return late_s >= LOOP_LATE_S or (ready is not None and ready())


class PatientDeadline:
    """The pure core of a wait bounded by ``bound_s``: times are the caller's clock, in seconds."""

    __slots__ = ("bound_s", "due", "extensions", "max_extensions")

    def __init__(self, now: float, bound_s: float, max_extensions: int = MAX_EXTENSIONS) -> None:
        self.bound_s, self.max_extensions = bound_s, max_extensions
        self.due = now + bound_s
        self.extensions = 0

    def over(self, now: float, ready: Callable[[], bool] | None = None) -> bool:
        """Asked when a timer set for ``due`` fires at ``now``: True when the wait has failed;
        False to wait on until ``due`` (moved on if the loop was paused or the answer is in)."""
        if now < self.due:
            return False
        if not forgives(self.extensions, now - self.due, ready, self.max_extensions):
            return True
        self.extensions += 1
        self.due = now + self.bound_s
        return False


class PatientTimeout(PatientDeadline):
    """``async with PatientTimeout(bound_s):`` is ``asyncio.timeout(bound_s)`` on a
    ``PatientDeadline``: TimeoutError only for a wait that failed in time the loop was free.

    ``ready`` (optional) tells whether the answer is waiting unread, e.g. a socket's ``poll``.
    """

    __slots__ = ("inner", "loop", "ready", "timer")

    def __init__(
        self,
        bound_s: float,
        ready: Callable[[], bool] | None = None,
        max_extensions: int = MAX_EXTENSIONS,
    ) -> None:
        super().__init__(0.0, bound_s, max_extensions)  # the clock starts on entering
        self.ready = ready
        self.timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> PatientTimeout:
        self.loop = loop = asyncio.get_running_loop()
        # asyncio's own Timeout does the cancelling and turns it into TimeoutError correctly
        # (nested timeouts, a cancel from outside); this class only decides when.
        self.inner = asyncio.timeout(None)
        await self.inner.__aenter__()
        self.due = loop.time() + self.bound_s
        self.timer = loop.call_at(self.due, self._fire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        await self.inner.__aexit__(exc_type, exc, tb)  # raises TimeoutError when it expired
        return None

    def _fire(self) -> None:
        now = self.loop.time()
        if self.over(now, self.ready):
            self.timer = None
            self.inner.reschedule(now)  # cancels the waiting task at once
        else:
            self.timer = self.loop.call_at(self.due, self._fire)


async def patiently(
    step: Awaitable[T],
    bound_s: float,
    ready: Callable[[], bool] | None = None,
    max_extensions: int = MAX_EXTENSIONS,
) -> T:
    """``await step`` under a ``PatientTimeout`` (``asyncio.wait_for`` that forgives pauses)."""
    async with PatientTimeout(bound_s, ready, max_extensions):
        return await step
