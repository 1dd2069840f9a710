"""A byte tunnel between two transports, for a connection that switched protocols (a ``101``).

    tunnel = Tunnel(loop, idle_timeout_s=600.0, on_close=forget)
    tunnel.join(client_transport, upstream_transport, client_pending, upstream_pending)
    tunnel.close()       # both sides, once what is written is sent (also when either side ends)
    tunnel.reset()       # both sides, now

``join`` makes each transport's protocol one ``TunnelSide``: what one side reads is written to
the other, with back-pressure each way through ``flow.py`` (a side whose writes are paused
pauses the reading of the other). ``*_pending`` are bytes already read from that side before
the hand-over (what followed the head in the same read): relayed first. The tunnel closes
both sides when either closes, ends its input, or fails; ``on_close`` is called once, then.

With ``idle_timeout_s``, a tunnel with no byte either way that long calls ``on_idle`` (by
default it closes): one timer per tunnel, re-armed for the remainder when it fires early, so
relaying a chunk costs one clock read, never a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from api_gateway.http.flow import PEER, Flow


class TunnelSide(asyncio.Protocol):
    """One transport of a tunnel: what it reads goes to the other side."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.flow = Flow(tunnel.loop)
        self.transport: asyncio.Transport | None = None
        self.other: TunnelSide = self  # set by the tunnel once both sides exist
        self.received = 0  # bytes read from this side (and relayed to the other)
        # Sees every chunk read from this side once it is relayed (None: nothing watches).
        self.watch: Callable[[bytes], None] | None = None

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = self.flow.transport = transport
        transport.set_protocol(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel.closed:
            return
        tunnel.last_active = tunnel.loop.time()
        self.received += len(data)
        other = self.other.transport
        if other is not None:
            other.write(data)
        if self.watch is not None:
            self.watch(data)  # after the relay: what it writes itself follows these bytes

    def eof_received(self) -> bool | None:
        # One side is done sending: the tunnel ends (no half-closed tunnels to keep).
        self.tunnel.ended(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.flow.lost(exc or ConnectionResetError("the tunnel's peer closed the connection"))
        self.tunnel.ended(self)

    def pause_writing(self) -> None:
        # This side cannot take more: stop reading what the other side sends.
        self.flow.pause_writing()
        self.other.flow.pause_reading(PEER)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.other.flow.resume_reading(PEER)


class Tunnel:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        idle_timeout_s: float = 0.0,
        on_idle: Callable[[Tunnel], None] | None = None,
        on_close: Callable[[Tunnel], None] | None = None,
    ) -> None:
        self.loop = loop
        self.idle_timeout_s = idle_timeout_s
        self.on_idle = on_idle
        self.on_close = on_close
        self.closed = False
        # Why it ended: "client" or "upstream" (that side closed), "idle", or what the closer
        # says (``close(reason)``).
        self.reason = ""
        self.last_active = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.client = TunnelSide(self)
        self.upstream = TunnelSide(self)
        self.client.other, self.upstream.other = self.upstream, self.client

    def join(
        self,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        client_pending: bytes = b"",
        upstream_pending: bytes = b"",
    ) -> None:
        self.client.attach(client)
        self.upstream.attach(upstream)
        for side, pending in ((self.client, client_pending), (self.upstream, upstream_pending)):
            if pending:
                side.data_received(pending)
        # A transport handed over may have been paused by its HTTP protocol: from now on only
        # the tunnel's own back-pressure holds it.
        client.resume_reading()
        upstream.resume_reading()
        self.last_active = self.loop.time()
        if self.idle_timeout_s > 0:
            self._timer = self.loop.call_later(self.idle_timeout_s, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        left = self.last_active + self.idle_timeout_s - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check_idle)
        elif self.on_idle is not None:
            self.on_idle(self)
        else:
            self.close("idle")

    def ended(self, side: TunnelSide) -> None:
        """``side``'s peer closed its connection or ended its input: the tunnel ends."""
        self.close("client" if side is self.client else "upstream")

    def close(self, reason: str = "gateway") -> None:
        """Close both sides once what is written to them is sent."""
        if not self.closed:
            self.reason = reason
        self._end(False)

    def reset(self, reason: str = "gateway") -> None:
        """Drop both sides now."""
        if not self.closed:
            self.reason = reason
        self._end(True)

    def _end(self, now: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is not None:
                if now:
                    transport.abort()
                else:
                    transport.close()
        if self.on_close is not None:
            self.on_close(self)
