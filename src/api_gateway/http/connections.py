"""Every open client connection of one server: the sweep of deadlines, the drain, the shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from api_gateway.http.upgrades import WebSocketTunnels

if TYPE_CHECKING:
    from api_gateway.http.server import HttpConnection

log = logging.getLogger("api_gateway.http")


class Connections:
    """Every open connection of one server, swept once a second for expired deadlines (a
    connection whose client bytes wait unread is spared a few sweeps: the loop was paused)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open: set[HttpConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = loop.call_later(1.0, self._sweep)
        self.drained: asyncio.Event | None = None
        # Shutting down: each connection closes once it has answered what it already received.
        self.draining = False
        # While draining, how long an idle connection stays open for a request already on its
        # way (0: it closes at once). Set by ``begin_drain``.
        self.idle_grace_s = 0.0
        # Connections handed over to WebSocket tunnels after a 101: no longer in ``open``.
        self.websockets = WebSocketTunnels(loop)

    def discard(self, connection: HttpConnection) -> None:
        self.open.discard(connection)
        if not self.open and self.drained is not None:
            self.drained.set()

    def _sweep(self) -> None:
        self.expire_due(self.loop.time())
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def expire_due(self, now: float) -> None:
        for connection in list(self.open):
            if connection.deadline < now and not connection.bytes_unread():
                connection.expire()

    def begin_drain(self, idle_grace_s: float = 0.0) -> None:
        """From now on every connection closes once it has answered what it received; idle
        ones once quiet for ``idle_grace_s`` (0: now), so that a request crossing on the wire is
        answered, with ``Connection: close``, not met by a closed connection.
        Connections accepted later (the listener's queue) are answered too."""
        self.draining = True
        self.idle_grace_s = idle_grace_s
        for connection in list(self.open):
            connection.end_when_idle()

    async def shutdown(self, grace_s: float) -> None:
        """Once the listener is closed: let busy connections finish for up to ``grace_s``, then
        reset the rest."""
        if not self.draining:
            self.begin_drain()
        self.drained = asyncio.Event()
        if self.open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), grace_s)
        if self.open:
            log.warning("grace period over: cutting %d connections", len(self.open))
        for connection in list(self.open):
            connection.reset()
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Let the reset connections' callbacks run, cancelling their requests' tasks.
        await asyncio.sleep(0)
