"""Header trust: what clients may not say about themselves, and what the gateway says instead.

Identity headers reach an upstream only from a verified token; the client's own copies are
removed whatever their case or count.
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import HeaderNotAllowed
from api_gateway.network import TrustedProxies
from api_gateway.types import Handler, Headers, Request, Response

# Identity the client may not claim, and the headers the gateway writes itself for every request.
BLOCKED_EXACT = frozenset(
    {
        b"x-tenant-id",
        b"x-admin-token",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-request-id",
    }
)
BLOCKED_PREFIXES = (b"x-internal-", b"x-user-", b"x-gateway-")
INTERNAL = (b"x-gateway-internal", b"true")
PEER_CACHE_SIZE = 4096
# One byte looked up by value: ``b"_" in name`` raises and swallows a TypeError on every call.
UNDERSCORE = ord("_")


class HeaderTrust:
    """Decides every header an upstream sees: the client's, filtered, and the gateway's own."""

    def __init__(self, trusted: TrustedProxies, port: int) -> None:
        self.trusted = trusted if trusted else None
        self.port = str(port).encode()
        # What a direct client's request gets before X-Forwarded-Host, rendered once per address.
        self.direct_headers: dict[str, Headers] = {}

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        kept: Headers = []
        host = None
        for header in request.headers:
            name = header[0]
            if UNDERSCORE in name:
                raise HeaderNotAllowed(
                    f"header names with '_' are not accepted ({name.decode('latin-1')})"
                )
            if name.startswith(b"x-") and (
                name in BLOCKED_EXACT or name.startswith(BLOCKED_PREFIXES)
            ):
                continue
            if name == b"host":
                host = header[1]  # the upstream gets its own Host; the client's is forwarded
                continue
            kept.append(header)
        trusted = self.trusted
        if trusted is not None and trusted.contains(request.peer_ip):
            added = self.forwarded_by_proxy(request)
        else:
            added = self.direct_headers.get(request.peer_ip) or self.direct(request.peer_ip)
            if host is not None:
                added = [*added, (b"x-forwarded-host", host)]
        added = [*added, (b"x-request-id", request.request_id.encode("ascii")), INTERNAL]
        if request.claims is not None:
            added += request.claims.identity
        request.headers = kept
        request.upstream_headers += added
        return call_next(request)

    def direct(self, peer_ip: str) -> Headers:
        """X-Forwarded-For, -Proto and -Port for a direct client, kept for the next request."""
        if len(self.direct_headers) >= PEER_CACHE_SIZE:
            self.direct_headers.clear()
        headers = self.direct_headers[peer_ip] = [
            (b"x-forwarded-for", peer_ip.encode("ascii")),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-port", self.port),
        ]
        return headers

    def forwarded_by_proxy(self, request: Request) -> Headers:
        """A trusted proxy's X-Forwarded-* are believed; the peer is appended to the chain."""
        peer = request.peer_ip.encode("ascii")
        chain = request.header_list(b"x-forwarded-for")
        proto = request.header(b"x-forwarded-proto") or b"http"
        host = request.header(b"x-forwarded-host") or request.header(b"host")
        port = request.header(b"x-forwarded-port") or self.port
        headers: Headers = [
            (b"x-forwarded-for", chain + b", " + peer if chain else peer),
            (b"x-forwarded-proto", proto),
            (b"x-forwarded-port", port),
        ]
        if host:
            headers.append((b"x-forwarded-host", host))
        return headers
