"""WebSocket handshakes: the last policy of a route's chain before its upstream call.

A handshake has passed everything a request passes (limits, authentication, tenancy, header
trust) when it gets here. This policy checks its form, counts it against the per-user and
per-worker caps, asks the upstream to switch (``Connection: upgrade``, ``Upgrade: websocket``
are hop-by-hop, so the gateway writes them itself) and, on a ``101``, gives the data plane the
tunnel's terms. A handshake goes straight to the upstream call: the response cache never sees
one. Every other request passes through at the cost of one attribute test.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.errors import BadRequest
from api_gateway.network import AddressKeys
from api_gateway.types import Handler, Request, Response
from api_gateway.websocket import WEBSOCKET, OpenTunnels, check_handshake

UPGRADE_LINES: Final = b"connection: upgrade\r\nupgrade: websocket\r\n"


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

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.upgrade != WEBSOCKET:
            return call_next(request)
        return self.handshake(request)

    async def handshake(self, request: Request) -> Response:
        if not self.allowed:
            raise BadRequest("WebSockets are not served on this route")
        check_handshake(request)
        claims = request.claims
        owner = (
            "user:" + claims.user_id
            if claims is not None
            else "ip:" + self.addresses(request.client_ip)
        )
        slot = self.tunnels.acquire(owner, self.max_per_user)
        request.upstream_block += UPGRADE_LINES
        try:
            response = await self.upstream(request)
        except BaseException:
            slot.release()
            raise
        switched = response.switched
        if switched is None:
            slot.release()  # the upstream answered without switching: a plain response
            return response
        switched.idle_timeout_s = self.idle_timeout_s
        switched.on_close = slot.release
        return response
