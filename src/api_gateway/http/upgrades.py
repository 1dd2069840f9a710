"""WebSocket tunnels of one server: opened after a ``101``, and closed going away at shutdown.

A tunnel moves bytes (``tunnel.py``); the gateway reads no message. It follows only the frame
boundaries of what the upstream sends the client (``websocket.FrameBoundary``: headers read,
payloads counted), so that going away it writes its close frame (``1001``) between two frames,
never inside one, and the browser reconnects at once instead of reporting a broken connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from api_gateway.http.tunnel import Tunnel
from api_gateway.types import Switched
from api_gateway.websocket import GOING_AWAY, FrameBoundary, close_frame

GOING_AWAY_FRAME: Final = close_frame(GOING_AWAY, b"the gateway is restarting")
# Going away waits this long for the upstream's frame in progress to end, then closes anyway.
BOUNDARY_WAIT_S: Final = 1.0


class WebSocketTunnel:
    """One client's WebSocket: its tunnel, and where the upstream's frames end."""

    __slots__ = ("boundary", "going", "on_close", "tunnel", "tunnels")

    def __init__(self, tunnels: WebSocketTunnels, switched: Switched) -> None:
        self.tunnels = tunnels
        self.boundary = FrameBoundary()
        self.going = False
        self.tunnel = Tunnel(tunnels.loop, switched.idle_timeout_s, on_close=self._closed)
        self.tunnel.upstream.watch = self._upstream_bytes
        self.on_close = switched.on_close

    def _upstream_bytes(self, data: bytes) -> None:
        self.boundary.feed(data)
        if self.going and self.boundary.at_boundary:
            self._say_goodbye()

    def go_away(self) -> None:
        """Close frame 1001 to the client at the next frame boundary (at once if at one)."""
        if self.tunnel.closed or self.going:
            return
        self.going = True
        if self.boundary.at_boundary:
            self._say_goodbye()
        else:
            self.tunnels.loop.call_later(BOUNDARY_WAIT_S, self.tunnel.close, "going_away")

    def _say_goodbye(self) -> None:
        transport = self.tunnel.client.transport
        if transport is not None and not transport.is_closing():
            transport.write(GOING_AWAY_FRAME)
        self.tunnel.close("going_away")

    def _closed(self, tunnel: Tunnel) -> None:
        self.tunnels.open.discard(self)
        if self.on_close is not None:
            self.on_close(tunnel.client.received, tunnel.upstream.received, tunnel.reason)
        if not self.tunnels.open and self.tunnels.emptied is not None:
            self.tunnels.emptied.set()


class WebSocketTunnels:
    """Every open WebSocket tunnel of one server."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open: set[WebSocketTunnel] = set()
        self.emptied: asyncio.Event | None = None

    def open_for(self, switched: Switched) -> Tunnel:
        websocket = WebSocketTunnel(self, switched)
        self.open.add(websocket)
        return websocket.tunnel

    async def shutdown(self, grace_s: float) -> None:
        """Open WebSockets keep the rest of the grace period, then hear the gateway go away."""
        if self.open:
            self.emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.emptied.wait(), grace_s)
        for websocket in list(self.open):
            websocket.go_away()
        if self.open:
            self.emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.emptied.wait(), BOUNDARY_WAIT_S + 0.5)
