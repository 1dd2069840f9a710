"""Flow control of one connection's transport: the server, the upstream client and the tunnel
share it (modelled on uvicorn's ``flow_control.py``).

    flow = Flow(loop)                       # with the protocol
    flow.transport = transport              # in ``connection_made``
    flow.pause_reading(BODY)                # True when this call paused the transport
    flow.resume_reading(BODY)               # True when this call resumed it (no reason left)
    flow.reading_paused                     # the reasons still holding reading (0: reading)
    flow.stop_reading()                     # nothing more is wanted: reading never resumes
    flow.pause_writing(); flow.resume_writing()   # from the protocol's callbacks of that name
    if flow.write_paused: await flow.drain()      # resolves when writing may go on
    flow.lost(error)                        # in ``connection_lost``: drains raise ``error``

Reading is paused for reasons, each a bit: the transport reads again only once every reason
is gone, so a body consumer catching up cannot undo the pause a long pipeline asked for.
``pause_reading`` and ``resume_reading`` take the reason ``BODY`` by default, so a
``BodyStream`` can be given the bound methods themselves.
"""

from __future__ import annotations

import asyncio
from typing import Final

# Why reading is paused (bits of ``Flow.reading_paused``).
BODY: Final = 1  # a body's consumer is behind (``BodyStream``'s high-water mark)
BACKLOG: Final = 2  # too many pipelined requests wait for an answer
PEER: Final = 4  # a tunnel's other side cannot take more bytes
STOPPED: Final = 8  # nothing more will be read (a protocol error): never resumed


class Flow:
    __slots__ = (
        "_waiter",
        "error",
        "loop",
        "reading_paused",
        "stopped",
        "transport",
        "write_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reading_paused = 0
        # Reading never resumes (the connection is ending, or is gone when ``error`` is set).
        self.stopped = False
        self.write_paused = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def pause_reading(self, reason: int = BODY) -> bool:
        """Add ``reason``; True when reading was going on and now is paused."""
        paused = self.reading_paused
        self.reading_paused = paused | reason
        transport = self.transport
        if paused or transport is None or self.error is not None:
            return False
        transport.pause_reading()
        return True

    def resume_reading(self, reason: int = BODY) -> bool:
        """Drop ``reason``; True when it was the last one and reading goes on again."""
        paused = self.reading_paused
        if not paused & reason:
            return False
        self.reading_paused = left = paused & ~reason
        transport = self.transport
        if left or self.stopped or transport is None:
            return False
        transport.resume_reading()
        return True

    def stop_reading(self) -> None:
        """From now on reading is never resumed (pausing it, if need be, is the caller's)."""
        self.stopped = True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._take_waiter()
        if waiter is not None:
            waiter.set_result(None)

    async def drain(self) -> None:
        """Return once the transport takes writes again; raise the error the connection was
        lost with (at once if it is lost already)."""
        if self.error is not None:
            raise self.error
        if not self.write_paused:
            return
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = self.loop.create_future()
        await waiter

    def lost(self, error: BaseException) -> None:
        """The connection is gone: nothing is read again, and a drain raises ``error``."""
        self.error = error
        self.stopped = True
        waiter = self._take_waiter()
        if waiter is not None:
            waiter.set_exception(error)

    def _take_waiter(self) -> asyncio.Future[None] | None:
        """The drain waiter still to be resolved, if any; from now on there is none."""
        waiter, self._waiter = self._waiter, None
        return waiter if waiter is not None and not waiter.done() else None
