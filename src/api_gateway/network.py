"""Which peers are trusted proxies, what they say about the client, and how addresses are keyed.

Repeated field lines of a forwarding header are one list (RFC 9110 §5.3): a trusted proxy that
appends its own line after the client's adds the right-most element, so the right-most element
decides, never the first line. A client address the gateway believes is a valid IP in one
canonical form (zone id dropped, IPv4-mapped IPv6 as IPv4), so it is safe to write anywhere and
one client cannot spell itself many ways.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from api_gateway.config.settings import Network
from api_gateway.memo import Memo
from api_gateway.types import Request

# Addresses remembered per memo, per worker (about 200 bytes an entry): the ones in use are kept
# when a memo is full, so a flood of new addresses costs them nothing.
ADDRESS_CACHE_SIZE: Final = 16_384
# Memos are bounded in bytes, not only in entries: text longer than this (a textual IPv6 address
# is at most 45 characters) is worked out each time rather than remembered, so a client
# sending 16 KiB hops cannot make 4096 entries cost 64 MiB.
MAX_MEMO_CHARS: Final = 64
DEFAULT_IPV6_PREFIX: Final = 64
ZERO: Final = ord("0")
NINE: Final = ord("9")
PERIOD: Final = ord(".")


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IP address, or None when ``text`` is not one.

    A zone id (``fe80::1%eth0``) names an interface of the machine that saw the address, not a
    host: it is dropped, or one client could vary it at will (and it may hold any character).
    """
    found = _CANONICAL.get(text)
    if found is not None:
        return found or None
    canonical = _canonical(text)
    if len(text) <= MAX_MEMO_CHARS:
        _CANONICAL.put(text, canonical or NOT_AN_ADDRESS)
    return canonical


def ipv4_number(text: str) -> int:
    """The 32-bit value of an IPv4 address in canonical dotted decimal (four decimal octets,
    none above 255, no leading zero: what ``ipaddress`` accepts, and writes back unchanged);
    -1 for any other text. One pass over at most 15 characters, no objects made: most client
    addresses are this, and a new one costs no parse by ``ipaddress``."""
    length = len(text)
    if length < 7 or length > 15:
        return -1
    number = 0
    octet = 0
    digits = 0
    dots = 0
    for index in range(length):
        code = ord(text[index])
        if ZERO <= code <= NINE:
            if digits == 1 and octet == 0:
                return -1  # a leading zero
            octet = octet * 10 + code - ZERO
            digits += 1
            if octet > 255:
                return -1
        elif code == PERIOD and digits and dots < 3:
            number = number * 256 + octet
            octet = digits = 0
            dots += 1
        else:
            return -1
    if dots != 3 or not digits:
        return -1
    return number * 256 + octet


def _canonical(text: str) -> str | None:
    if ipv4_number(text) >= 0:
        return text  # already canonical
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


# Text -> its canonical address, or NOT_AN_ADDRESS (a memo's values are never None).
NOT_AN_ADDRESS: Final = ""
_CANONICAL: Final[Memo[str, str]] = Memo(ADDRESS_CACHE_SIZE)


def rightmost(request: Request, name: bytes) -> bytes | None:
    """The right-most non-empty element of a list-valued header, over all its lines."""
    value = request.header_list(name)
    if value is None:
        return None
    for element in reversed(value.split(b",")):
        element = element.strip(b" \t")
        if element:
            return element
    return None


class TrustedProxies:
    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.memo: Memo[str, bool] = Memo(ADDRESS_CACHE_SIZE)
        # The IPv4 networks as (address, mask) integers: an IPv4 address is checked against
        # them with integer operations, not ipaddress objects.
        self.ipv4 = [
            (int(net.network_address), int(net.netmask))
            for net in networks
            if isinstance(net, ipaddress.IPv4Network)
        ]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def contains(self, address: str) -> bool:
        found = self.memo.get(address)
        if found is not None:
            return found
        contained = self._contains(address)
        if len(address) <= MAX_MEMO_CHARS:
            self.memo.put(address, contained)
        return contained

    def _contains(self, address: str) -> bool:
        number = ipv4_number(address)
        if number >= 0:
            return self.ipv4_contains(number)
        canonical = canonical_ip(address)
        if canonical is None:
            return False
        number = ipv4_number(canonical)  # an IPv4-mapped IPv6 address
        if number >= 0:
            return self.ipv4_contains(number)
        ip = ipaddress.ip_address(canonical)
        return any(ip in network for network in self.networks)

    def ipv4_contains(self, number: int) -> bool:
        """Whether the IPv4 address of value ``number`` is in a trusted network: a loop, not
        ``any()`` over a generator (COMPILED.md §12)."""
        for net, mask in self.ipv4:  # noqa: SIM110
            if number & mask == net:
                return True
        return False

    def client_ip(self, request: Request) -> str:
        """The right-most address of X-Forwarded-For that is not a trusted proxy, canonical;
        the peer when that hop is not an IP address."""
        peer = request.peer_ip
        if not self.contains(peer):
            return peer
        chain = request.header_list(b"x-forwarded-for")
        if not chain:
            return canonical_ip(peer) or peer
        for hop in reversed(chain.decode("latin-1").split(",")):
            hop = hop.strip(" \t")
            # A canonical IPv4 address (most hops) is decided by integers, neither memo asked:
            # with many clients, each a new address, the memos would miss and fill every time.
            number = ipv4_number(hop)
            if number >= 0:
                if not self.ipv4_contains(number):
                    return hop
            elif not self.contains(hop):
                return canonical_ip(hop) or canonical_ip(peer) or peer
        return canonical_ip(peer) or peer

    def forwarded(self, request: Request, name: bytes) -> bytes | None:
        """What the nearest trusted proxy says in ``name`` (None from an untrusted peer)."""
        if not self.contains(request.peer_ip):
            return None
        return rightmost(request, name)

    def client_host(self, request: Request) -> bytes | None:
        """The host the client asked for: Host, or what the nearest trusted proxy says it was."""
        if self.networks:
            forwarded = self.forwarded(request, b"x-forwarded-host")
            if forwarded:
                return forwarded
        return request.header(b"host")


class AddressKeys:
    """The rate-limit identity of a client address: an IPv4 address whole, an IPv6 address by
    its network prefix (a /64 is one subscriber's, so whole addresses would hand one client
    2^64 buckets). Memoized: computed once per address, a dictionary hit after that."""

    def __init__(self, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.keys: Memo[str, str] = Memo(ADDRESS_CACHE_SIZE)

    def __call__(self, client_ip: str) -> str:
        key = self.keys.get(client_ip)
        return key if key is not None else self.compute(client_ip)

    def compute(self, client_ip: str) -> str:
        canonical = canonical_ip(client_ip)
        key = client_ip if canonical is None else canonical
        if canonical is not None and ":" in canonical and self.ipv6_prefix < 128:
            key = str(ipaddress.IPv6Network((canonical, self.ipv6_prefix), strict=False))
        if len(client_ip) <= MAX_MEMO_CHARS:
            self.keys.put(client_ip, key)
        return key
