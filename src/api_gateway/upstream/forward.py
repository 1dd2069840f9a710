"""The terminal handler of every proxied route: render the upstream request and send it.

The header list it renders is already final: the data plane dropped the hop-by-hop fields and
``HeaderTrust`` decided the rest (the client's, filtered, and the gateway's own).
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.http.client import UpstreamPool
from api_gateway.types import Request, Response
from api_gateway.upstream.endpoints import ServiceEndpoints

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Forwarder:
    """Sends a request to one instance of a service and hands back the streaming response."""

    def __init__(self, service: ServiceEndpoints, pool: UpstreamPool, timeout_ms: int) -> None:
        self.pool, self.service = pool, service
        self.timeout_s = timeout_ms / 1000
        self.turn = 0

    def __call__(self, request: Request) -> Awaitable[Response]:
        endpoints = self.service.endpoints
        self.turn += 1
        endpoint = endpoints[self.turn % len(endpoints)]
        head, chunked = self._head(request, endpoint.host_line)
        return self.pool.request(
            endpoint.address, head, request.body, chunked, self.timeout_s, request.method
        )

    def _head(self, request: Request, host_line: bytes) -> tuple[bytes, bool]:
        target = request.path.encode("ascii")
        if request.query:
            target += b"?" + request.query
        body = request.body
        chunked = False
        if isinstance(body, bytes):
            framing = (
                b"content-length: %d" % len(body) if body or request.method in BODY_METHODS else b""
            )
        elif request.content_length is not None:
            framing = b"content-length: %d" % request.content_length
        else:
            chunked = True
            framing = b"transfer-encoding: chunked"
        lines = [
            b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target),
            host_line,
            *map(b": ".join, request.headers),
            *map(b": ".join, request.upstream_headers),
        ]
        if framing:
            lines.append(framing)
        lines.append(b"\r\n")
        return b"\r\n".join(lines), chunked
