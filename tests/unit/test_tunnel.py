"""The byte tunnel: two real socket pairs, bytes both ways, back-pressure, closing, idleness."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from api_gateway.errors import GatewayError
from api_gateway.http.connections import Connections
from api_gateway.http.flow import PEER
from api_gateway.http.server import HttpConnection, ServerBounds
from api_gateway.http.server_phases import ENDING, TUNNEL
from api_gateway.http.tunnel import Tunnel
from api_gateway.types import Request, Response

Ends = tuple[Tunnel, socket.socket, socket.socket]


async def tunnel_between(
    client_pending: bytes = b"", upstream_pending: bytes = b"", **options: object
) -> Ends:
    """A tunnel between two transports, and the far end of each: the client, the upstream."""
    loop = asyncio.get_running_loop()
    sides = []
    far = []
    for _ in range(2):
        near, other = socket.socketpair()
        other.setblocking(False)
        transport, _protocol = await loop.connect_accepted_socket(asyncio.Protocol, near)
        sides.append(transport)
        far.append(other)
    tunnel = Tunnel(loop, **options)  # type: ignore[arg-type]
    tunnel.join(sides[0], sides[1], client_pending, upstream_pending)
    return tunnel, far[0], far[1]


async def receive(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < size:
        piece = await asyncio.wait_for(loop.sock_recv(sock, size - len(got)), 5.0)
        if not piece:
            break
        got += piece
    return got


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20.0))


def test_bytes_go_both_ways_pending_ones_first() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        tunnel, client, upstream = await tunnel_between(b"early ", b"hello ")
        await loop.sock_sendall(client, b"ping")
        assert await receive(upstream, 10) == b"early ping"
        await loop.sock_sendall(upstream, b"pong")
        assert await receive(client, 10) == b"hello pong"
        tunnel.close()
        client.close()
        upstream.close()

    run(main)


def test_a_side_that_cannot_take_more_pauses_the_other() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        tunnel, client, upstream = await tunnel_between()
        tunnel.upstream.transport.set_write_buffer_limits(high=64 * 1024)  # type: ignore[union-attr]
        data = bytes(range(256)) * 16384  # 4 MiB: more than the socket buffers hold
        sending = asyncio.ensure_future(loop.sock_sendall(client, data))
        for _ in range(200):
            if tunnel.client.flow.reading_paused & PEER:
                break
            await asyncio.sleep(0.01)
        assert tunnel.client.flow.reading_paused & PEER  # the upstream is not reading
        assert await receive(upstream, len(data)) == data  # nothing lost once it reads
        await sending
        assert not tunnel.client.flow.reading_paused
        tunnel.close()
        client.close()
        upstream.close()

    run(main)


def test_either_side_closing_closes_both_once() -> None:
    async def main() -> None:
        closed: list[Tunnel] = []
        tunnel, client, upstream = await tunnel_between(on_close=closed.append)
        client.close()
        assert await receive(upstream, 1) == b""  # the upstream sees the end
        assert closed == [tunnel] and tunnel.closed
        tunnel.close()
        assert closed == [tunnel]
        upstream.close()

    run(main)


def test_an_idle_tunnel_calls_its_hook_and_closes_by_default() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle: list[Tunnel] = []
        tunnel, client, upstream = await tunnel_between(idle_timeout_s=1.0, on_idle=idle.append)
        await asyncio.sleep(0.6)
        await loop.sock_sendall(client, b"x")  # activity: the timer re-arms for the rest
        assert await receive(upstream, 1) == b"x"
        await asyncio.sleep(0.6)  # past the first deadline, not past the re-armed one
        assert idle == []
        for _ in range(100):
            if idle:
                break
            await asyncio.sleep(0.05)
        assert idle == [tunnel] and not tunnel.closed
        tunnel.close()
        client.close()
        upstream.close()

        tunnel, client, upstream = await tunnel_between(idle_timeout_s=0.1)
        assert await receive(client, 1) == b""  # closed for idleness
        assert tunnel.closed
        client.close()
        upstream.close()

    run(main)


class Waiting:
    """An application that holds every request until told (the 101 it would send aside)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        self.arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        raise AssertionError(error)


def test_a_server_connection_hands_its_transport_to_a_tunnel() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        app, connections = Waiting(), Connections(loop)
        near, client = socket.socketpair()
        client.setblocking(False)
        _, protocol = await loop.connect_accepted_socket(
            lambda: HttpConnection(app, ServerBounds(), connections, 0), near
        )
        connection = protocol
        head = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        await loop.sock_sendall(client, head + b"early")
        await asyncio.wait_for(app.arrived.wait(), 5.0)
        assert connection.phase == ENDING  # nothing more is parsed after an upgrade
        up_near, upstream = socket.socketpair()
        upstream.setblocking(False)
        up_transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, up_near)
        tunnel = Tunnel(loop)
        connection.hand_over(tunnel, up_transport, b"switched")
        assert connection.phase == TUNNEL and connection not in connections.open
        assert await receive(upstream, 5) == b"early"  # sent after the head, kept for it
        assert await receive(client, 8) == b"switched"
        await loop.sock_sendall(client, b"frame")
        assert await receive(upstream, 5) == b"frame"
        tunnel.close()
        assert connection.task is not None
        connection.task.cancel()  # the exchange would have finished after its 101
        await connections.shutdown(0.1)
        client.close()
        upstream.close()

    run(main)
