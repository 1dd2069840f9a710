"""Header trust: what clients may not say about themselves, and what the gateway says instead.

Identity headers reach an upstream only from a verified token; the client's own copies are
removed whatever their case or count.
"""

from __future__ import annotations

from api_gateway.errors import HeaderNotAllowed
from api_gateway.network import TrustedProxies
from api_gateway.types import Handler, Headers, Request, Response

BLOCKED_EXACT = frozenset({b"x-tenant-id", b"x-admin-token"})
BLOCKED_PREFIXES = (b"x-internal-", b"x-user-", b"x-gateway-")
INTERNAL = (b"x-gateway-internal", b"true")


class HeaderTrust:
    def __init__(self, trusted: TrustedProxies, port: int) -> None:
        self.trusted = trusted
        self.port = str(port).encode()

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        kept: Headers = []
        for name, value in request.headers:
            if b"_" in name:
                raise HeaderNotAllowed(
                    f"header names with '_' are not accepted ({name.decode('latin-1')})"
                )
            if name in BLOCKED_EXACT or name.startswith(BLOCKED_PREFIXES):
                continue
            kept.append((name, value))
        request.headers = kept
        added = request.upstream_headers
        added.extend(self.forwarded(request))
        added.append((b"x-request-id", request.request_id.encode("ascii")))
        added.append(INTERNAL)
        if request.claims is not None:
            added += request.claims.identity
        return await call_next(request)

    def forwarded(self, request: Request) -> Headers:
        """X-Forwarded-*: the client's values are believed only from a trusted proxy."""
        trusted = bool(self.trusted) and self.trusted.contains(request.peer_ip)
        peer = request.peer_ip.encode("ascii")
        chain = request.header_list(b"x-forwarded-for") if trusted else None
        proto = (request.header(b"x-forwarded-proto") if trusted else None) or b"http"
        host = (request.header(b"x-forwarded-host") if trusted else None) or request.header(b"host")
        port = (request.header(b"x-forwarded-port") if trusted else None) or self.port
        headers: Headers = [
            (b"x-forwarded-for", chain + b", " + peer if chain else peer),
            (b"x-forwarded-proto", proto),
            (b"x-forwarded-port", port),
        ]
        if host:
            headers.append((b"x-forwarded-host", host))
        return headers
