"""A bug in a request never takes the worker down: the data plane drops that connection only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from api_gateway.errors import GatewayError
from api_gateway.http.server import Connections, HttpConnection, ServerBounds
from api_gateway.types import Request, Response

TIMEOUT_S = 5.0


class BrokenStream:
    """A response body that fails halfway, as a buggy policy's stream might."""

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("a bug while streaming")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    def abort(self) -> None:
        pass


class BuggyApp:
    async def handle(self, request: Request) -> Response:
        if request.target == b"/boom":
            raise RuntimeError("a bug before answering")
        if request.target == b"/broken-stream":
            return Response(200, [], BrokenStream())
        return Response(200, [], b"fine")

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        return Response(error.status, [], b"")


async def exchange(port: int, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), TIMEOUT_S)  # until the server closes
    writer.close()
    return data


async def serve_and_probe() -> list[bytes]:
    loop = asyncio.get_running_loop()
    connections = Connections(loop)
    server = await loop.create_server(
        lambda: HttpConnection(BuggyApp(), ServerBounds(keep_alive_timeout_s=0.5), connections, 0),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        return [await exchange(port, t) for t in ("/boom", "/broken-stream", "/fine")]
    finally:
        server.close()
        await connections.shutdown(1.0)


def test_a_request_that_raises_costs_its_connection_and_nothing_else() -> None:
    boom, broken, fine = asyncio.run(serve_and_probe())

    assert boom == b""  # dropped, not answered with a guess
    assert broken.startswith(b"HTTP/1.1 200") and b"0\r\n\r\n" not in broken  # cut short
    assert fine.startswith(b"HTTP/1.1 200") and fine.endswith(b"fine")
