"""Stalling the event loop from inside its I/O phase, and waiting, bounded, for a state."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

# Bound on the wall time a test waits for a state. A bound in loop ticks alone (10,000 ticks:
# under 0.1 s on a free machine) ran out while a loaded machine's peer was still answering.
WAIT_S = 10.0


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
    """Yields one loop tick at a time (nothing else may run in between) until ``condition``."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the state was never reached")
        await asyncio.sleep(0)
