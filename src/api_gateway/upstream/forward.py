"""The terminal handler of every proxied route: build the upstream request and send it."""

from __future__ import annotations

from itertools import cycle

from api_gateway.config.settings import ServiceConfig
from api_gateway.http.client import UpstreamPool
from api_gateway.http.framing import without_hop_by_hop
from api_gateway.types import Request, Response

# Rebuilt by the gateway for every request, so the client's copies never pass.
REPLACED = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-request-id",
    }
)
RESPONSE_DROPPED = frozenset({b"x-gateway-internal"})


class Forwarder:
    """Sends a request to one instance of a service and hands back the streaming response."""

    def __init__(self, service: ServiceConfig, pool: UpstreamPool, timeout_ms: int) -> None:
        self.pool = pool
        self.timeout_s = timeout_ms / 1000
        self.instances = cycle(
            [((i.host, i.port), f"host: {i.authority}\r\n".encode()) for i in service.instances]
        )

    async def __call__(self, request: Request) -> Response:
        address, host_line = next(self.instances)
        head, chunked = self._head(request, host_line)
        response = await self.pool.request(
            address, head, request.body, chunked, self.timeout_s, request.method
        )
        response.headers = without_hop_by_hop(response.headers, RESPONSE_DROPPED)
        return response

    def _head(self, request: Request, host_line: bytes) -> tuple[bytes, bool]:
        target = request.path.encode("ascii")
        if request.query:
            target += b"?" + request.query
        parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", host_line]
        for name, value in without_hop_by_hop(request.headers, REPLACED):
            parts += (name, b": ", value, b"\r\n")
        for name, value in request.upstream_headers:
            parts += (name, b": ", value, b"\r\n")
        body = request.body
        chunked = False
        if isinstance(body, bytes):
            if body or request.method in ("POST", "PUT", "PATCH"):
                parts.append(b"content-length: %d\r\n" % len(body))
        elif request.content_length is not None:
            parts.append(b"content-length: %d\r\n" % request.content_length)
        else:
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts), chunked
