"""The request as its upstream received it: what a cached answer may depend on.

The cache runs after ``HeaderTrust``, which has removed what the client may not say (its
``Host``, ``X-Forwarded-*``, ``X-Venue-*``, identity headers) and rendered what the gateway
says instead into ``Request.upstream_block``; domain routing put the venue into
``Request.upstream_headers``. An answer can depend only on what the upstream received, so keys
and ``Vary`` are read from there, never from the client's own copies: a client cannot pick
another venue's, host's or user's variant by sending the header itself, and a header the
gateway rewrites never collapses into one variant for everyone.

Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Final

from api_gateway.errors import InvalidHost
from api_gateway.hosts import MAX_HOST_BYTES, normalize_host
from api_gateway.memo import Memo
from api_gateway.types import Headers, Request

# The origin the client asked for, as the upstream is told it: links, redirects and
# white-label pages are built from these.
FORWARDED_HOST: Final = b"x-forwarded-host"
FORWARDED_PROTO: Final = b"x-forwarded-proto"
FORWARDED_PORT: Final = b"x-forwarded-port"
FORWARDED_HOST_LINE: Final = FORWARDED_HOST + b": "
FORWARDED_PROTO_LINE: Final = FORWARDED_PROTO + b": "
FORWARDED_PORT_LINE: Final = FORWARDED_PORT + b": "
FORWARDED_LINES: Final = 4  # the X-Forwarded-* lines HeaderTrust writes at most, first
# The venue domain routing resolved (absent on the platform's own hosts).
VENUE: Final = b"x-venue-id"
VENUE_TENANT: Final = b"x-venue-tenant-id"
# The upstream's Host is the instance's own address, unknown before the balancer picks one: a
# ``Vary: Host`` is read as the host the client asked for, the one the key already holds.
HOST: Final = b"host"
# Headers that are new for every request or attempt: an answer varying on one of them can never
# be served again, so it is not stored.
PER_REQUEST: Final = frozenset({b"x-request-id", b"x-correlation-id", b"x-request-deadline-ms"})
HOST_MEMO_SIZE: Final = 4096
_HOSTS: Final[Memo[bytes, bytes]] = Memo(HOST_MEMO_SIZE)
# A longer value is no host name (``normalize_host`` refuses it) and is never remembered: 4096
# distinct 16 KiB values would keep 128 MiB (each twice) per worker. Every valid host still is.
MAX_MEMO_HOST: Final = MAX_HOST_BYTES


def gateway_headers(request: Request) -> Headers:
    """The headers the gateway itself sends the upstream: the venue's, then the rendered block."""
    headers = list(request.upstream_headers)
    for line in request.upstream_block.split(b"\r\n"):
        name, sep, value = line.partition(b": ")
        if sep:
            headers.append((name, value))
    return headers


def received(request: Request, name: bytes, gateway: Headers) -> bytes | None:
    """All values of ``name`` the upstream receives, joined as one list (RFC 9110 §5.3).

    The client's headers and the gateway's never share a name: HeaderTrust removed the
    client's copies of every name the gateway writes."""
    if name == HOST:
        return canonical_host(first(gateway, FORWARDED_HOST))
    values = [value for key, value in request.headers if key == name]
    values += [value for key, value in gateway if key == name]
    return b", ".join(values) if values else None


def first(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def canonical_host(raw: bytes | None) -> bytes | None:
    """``Venue.COM.`` and ``venue.com:80`` are one host; a value that is no host stays as it
    was, marked so that it can never equal a canonical one."""
    if raw is None:
        return None
    found = _HOSTS.get(raw)
    return found if found is not None else _canonical_new(raw)


def _canonical_new(raw: bytes) -> bytes:
    if len(raw) > MAX_MEMO_HOST:
        return b"?" + raw
    try:
        found = normalize_host(raw).key.encode("ascii")
    except InvalidHost:
        found = b"?" + raw
    _HOSTS.put(raw, found)
    return found


def origin(request: Request) -> bytes:
    """Where the client sent the request, as the upstream is told: host, scheme, port, venue.

    One line per value (``+value``, or ``-`` when absent): a value never holds a line break,
    so different origins never give the same bytes."""
    host, proto, port = forwarded_origin(request.upstream_block)
    venue = request.upstream_headers
    values = [
        canonical_host(host),
        proto,
        port,
        first(venue, VENUE),
        first(venue, VENUE_TENANT),
    ]
    return b"\n".join([b"-" if value is None else b"+" + value for value in values])


def forwarded_origin(block: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """X-Forwarded-Host, -Proto and -Port in ``block`` (rendered header lines): each the value
    of the first line that begins with its ``name: ``, None if none does. One pass, which
    stops once all three are found (HeaderTrust writes them first). Values hold no line break,
    so a line begins only after one."""
    found: list[bytes | None] = [None, None, None]
    # HeaderTrust's own lines come first (-For, -Proto, -Port, -Host): split off those alone,
    # and the rest only when one of the three is not among them.
    lines = block.split(b"\r\n", FORWARDED_LINES)
    rest = lines.pop() if len(lines) > FORWARDED_LINES else b""
    if not _found_all(lines, found) and rest:
        _found_all(rest.split(b"\r\n"), found)
    return found[0], found[1], found[2]


def _found_all(lines: list[bytes], found: list[bytes | None]) -> bool:
    """Fill in ``found`` (host, proto, port) from ``lines`` where still None: whether all three
    are known."""
    for line in lines:
        if found[0] is None and line.startswith(FORWARDED_HOST_LINE):
            found[0] = line[len(FORWARDED_HOST_LINE) :]
        elif found[1] is None and line.startswith(FORWARDED_PROTO_LINE):
            found[1] = line[len(FORWARDED_PROTO_LINE) :]
        elif found[2] is None and line.startswith(FORWARDED_PORT_LINE):
            found[2] = line[len(FORWARDED_PORT_LINE) :]
        else:
            continue
        if found[0] is not None and found[1] is not None and found[2] is not None:
            return True
    return False


def vary_values(request: Request, names: tuple[bytes, ...]) -> tuple[bytes | None, ...]:
    """The values of the headers an answer varies on, as the upstream received them."""
    if not names:
        return ()
    gateway = gateway_headers(request)
    return tuple(received(request, name, gateway) for name in names)
