"""Stalling the event loop from inside its I/O phase, and waiting a bounded number of ticks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

WAIT_TICKS = 10_000  # bound on the loop ticks a test waits for a state


class Stalling(asyncio.Protocol):
    """Stalls the loop from inside its I/O phase, where a heavy request is read and parsed: the
    timers of that tick run right after it, before the loop reads anything else."""

    def __init__(self, block: Callable[[], None]) -> None:
        self.block = block

    def data_received(self, data: bytes) -> None:
        self.block()


async def stall_trigger(block: Callable[[], None]) -> socket.socket:
    """A socket; a byte sent on it stalls the loop with ``block`` on its next I/O phase."""
    ours, theirs = socket.socketpair()
    await asyncio.get_running_loop().connect_accepted_socket(lambda: Stalling(block), ours)
    return theirs


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(WAIT_TICKS):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the state was never reached")
