"""WebSocket handshakes: the last policy of a route's chain before its upstream call.

A handshake has passed everything a request passes (limits, authentication, tenancy, header
trust) when it gets here. This policy checks its form, counts it against the per-user and
per-worker caps, asks the upstream to switch (``Connection: upgrade``, ``Upgrade: websocket``
are hop-by-hop, so the gateway writes them itself) and, on a ``101``, gives the data plane the
tunnel's terms. A handshake goes straight to the upstream call: the response cache never sees
one. Every other request passes through at the cost of one attribute test.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Final

from api_gateway.errors import BadRequest, GatewayError
from api_gateway.network import AddressKeys
from api_gateway.types import Handler, Request, Response
from api_gateway.websocket import WEBSOCKET, OpenTunnels, TunnelSlot, check_handshake

UPGRADE_LINES: Final = b"connection: upgrade\r\nupgrade: websocket\r\n"


class WebSocketStats:
    """One route's WebSockets, for the metrics: handshakes by result, open tunnels, bytes each
    way and time open (of the closed ones)."""

    __slots__ = ("bytes_in", "bytes_out", "closed", "handshakes", "open", "seconds")

    def __init__(self) -> None:
        self.handshakes = {"switched": 0, "refused": 0, "not_switched": 0, "failed": 0}
        self.open = self.closed = self.bytes_in = self.bytes_out = 0
        self.seconds = 0.0


class TunnelEnd:
    """What a tunnel's end tells: its slot is released and its figures counted, once."""

    __slots__ = ("opened", "slot", "stats")

    def __init__(self, slot: TunnelSlot, stats: WebSocketStats) -> None:
        self.slot, self.stats, self.opened = slot, stats, time.monotonic()
        stats.open += 1

    def __call__(self, sent: int, received: int, reason: str) -> None:
        if not self.slot.open:
            return
        self.slot.release()
        stats = self.stats
        stats.open -= 1
        stats.closed += 1
        stats.bytes_in += sent
        stats.bytes_out += received
        stats.seconds += time.monotonic() - self.opened


class WebSocketGate:
    def __init__(
        self,
        allowed: bool,
        idle_timeout_ms: int,
        max_per_user: int,
        tunnels: OpenTunnels,
        addresses: AddressKeys,
        upstream: Handler,
    ) -> None:
        self.allowed, self.max_per_user = allowed, max_per_user
        self.idle_timeout_s = idle_timeout_ms / 1000
        self.tunnels, self.addresses = tunnels, addresses
        self.upstream = upstream  # the route's upstream call: a handshake skips the cache
        self.stats = WebSocketStats()

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.upgrade != WEBSOCKET:
            return call_next(request)
        return self.handshake(request)

    async def handshake(self, request: Request) -> Response:
        handshakes = self.stats.handshakes
        try:
            slot = self.admit(request)
        except GatewayError:
            handshakes["refused"] += 1
            raise
        request.upstream_block += UPGRADE_LINES
        try:
            response = await self.upstream(request)
        except BaseException:
            handshakes["failed"] += 1
            slot.release()
            raise
        switched = response.switched
        if switched is None:
            handshakes["not_switched"] += 1
            slot.release()  # the upstream answered without switching: a plain response
            return response
        handshakes["switched"] += 1
        switched.idle_timeout_s = self.idle_timeout_s
        switched.on_close = TunnelEnd(slot, self.stats)
        return response

    def admit(self, request: Request) -> TunnelSlot:
        """The handshake's place among the open tunnels, or why it gets none."""
        if not self.allowed:
            raise BadRequest("WebSockets are not served on this route")
        check_handshake(request)
        claims = request.claims
        owner = (
            "user:" + claims.user_id
            if claims is not None
            else "ip:" + self.addresses(request.client_ip)
        )
        return self.tunnels.acquire(owner, self.max_per_user)
