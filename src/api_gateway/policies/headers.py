"""Header trust: what clients may not say about themselves, and what the gateway says instead.

Identity headers reach an upstream only from a verified token; the client's own copies are
removed whatever their case or count.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.errors import HeaderNotAllowed
from api_gateway.http.wire import header_lines
from api_gateway.memo import Memo
from api_gateway.network import TrustedProxies, rightmost
from api_gateway.types import Handler, Headers, Request, Response

# Identity the client may not claim, and the headers the gateway writes itself for every request.
# Where the request came from is said by the gateway's X-Forwarded-* alone: a client's Forwarded,
# X-Real-IP and the like would be a second answer an upstream might believe.
BLOCKED_EXACT: Final = frozenset(
    {
        b"x-tenant-id",
        b"x-api-key-id",
        b"x-auth-method",
        b"x-api-key",  # a gateway credential: never a service's business
        b"x-admin-token",
        b"x-request-id",
        b"x-correlation-id",  # the gateway's is the request id; the client's is only logged
        b"x-request-deadline-ms",
        b"forwarded",
        b"x-real-ip",
        b"x-client-ip",
        b"true-client-ip",
    }
)
BLOCKED_PREFIXES = (b"x-internal-", b"x-user-", b"x-gateway-", b"x-venue-", b"x-forwarded-")
INTERNAL: Final = b"x-gateway-internal: true\r\n"
PEER_CACHE_SIZE: Final = 4096
NAME_CACHE_SIZE: Final = 4096
# Names longer than this are classified every time, not remembered: 4096 names of 16 KiB each
# would otherwise keep 64 MiB per worker.
MAX_CACHED_NAME: Final = 64

# What happens to a client's header, by name.
KEEP: Final = 0
DROP: Final = 1
HOST: Final = 2
REFUSE: Final = 3


def classify(name: bytes) -> int:
    if ord("_") in name:  # by value: ``b"_" in name`` raises and swallows a TypeError
        return REFUSE
    if name in BLOCKED_EXACT or name.startswith(BLOCKED_PREFIXES):
        return DROP
    return HOST if name == b"host" else KEEP


class HeaderTrust:
    """Decides every header an upstream sees: the client's, filtered, and the gateway's own."""

    def __init__(self, trusted: TrustedProxies, port: int) -> None:
        self.trusted = trusted if trusted else None
        self.port = str(port).encode()
        # What a direct client's request gets before X-Forwarded-Host, rendered once per address.
        self.direct_lines: Memo[str, bytes] = Memo(PEER_CACHE_SIZE)
        # Clients send few distinct names: each is classified once, then looked up.
        self.kinds: Memo[bytes, int] = Memo(NAME_CACHE_SIZE)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        kept: Headers = []
        host = None
        kinds = self.kinds.young  # the memo's hits, in place: once per field
        for header in request.headers:
            kind = kinds.get(header[0])
            if kind is None:
                kind = self.kind(header[0])
            if kind == KEEP:
                kept.append(header)
            elif kind == HOST:
                host = header[1]  # the upstream gets its own Host; the client's is forwarded
            elif kind == REFUSE:
                raise HeaderNotAllowed(
                    f"header names with '_' are not accepted ({header[0].decode('latin-1')})"
                )
        trusted = self.trusted
        if trusted is not None and trusted.contains(request.peer_ip):
            forwarded = header_lines(self.forwarded_by_proxy(request))
            host_lines: tuple[bytes, ...] = ()
        else:
            forwarded = self.direct_lines.young.get(request.peer_ip) or self.direct(request.peer_ip)
            host_lines = () if host is None else (b"x-forwarded-host: ", host, b"\r\n")
        claims = request.claims
        request.headers = kept
        # Rendered here in one piece (the same for every attempt), not as a header per line.
        # X-Correlation-ID is the request id too: the platform's services log by that name.
        request_id = request.request_id.encode("ascii")
        request.upstream_block = b"".join(
            (
                forwarded,
                *host_lines,
                b"x-request-id: ",
                request_id,
                b"\r\nx-correlation-id: ",
                request_id,
                b"\r\n",
                INTERNAL,
                b"" if claims is None else claims.identity,
            )
        )
        return call_next(request)

    def kind(self, name: bytes) -> int:
        found = self.kinds.get(name)  # from the memo's old generation, if it is there
        if found is not None:
            return found
        kind = classify(name)
        if len(name) <= MAX_CACHED_NAME:
            self.kinds.put(name, kind)
        return kind

    def direct(self, peer_ip: str) -> bytes:
        """X-Forwarded-For, -Proto and -Port for a direct client, kept for the next request."""
        lines = self.direct_lines.get(peer_ip)  # from the memo's old generation, if there
        if lines is None:
            lines = header_lines(
                [
                    (b"x-forwarded-for", peer_ip.encode("ascii")),
                    (b"x-forwarded-proto", b"http"),
                    (b"x-forwarded-port", self.port),
                ]
            )
            self.direct_lines.put(peer_ip, lines)
        return lines

    def forwarded_by_proxy(self, request: Request) -> Headers:
        """A trusted proxy's X-Forwarded-* are believed; the peer is appended to the chain."""
        peer = request.peer_ip.encode("ascii")
        chain = request.header_list(b"x-forwarded-for")
        # Repeated lines are one list whose right-most element the nearest proxy added: the
        # client's own line before it must not win. One value each goes on, the decided one.
        trusted = self.trusted
        assert trusted is not None
        proto = rightmost(request, b"x-forwarded-proto") or b"http"
        host = trusted.client_host(request)
        port = rightmost(request, b"x-forwarded-port") or self.port
        headers: Headers = [
            (b"x-forwarded-for", chain + b", " + peer if chain else peer),
            (b"x-forwarded-proto", proto),
            (b"x-forwarded-port", port),
        ]
        if host:
            headers.append((b"x-forwarded-host", host))
        return headers
