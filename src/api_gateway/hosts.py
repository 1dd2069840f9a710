"""Host names: the client's ``Host`` in one canonical form, and which hosts are the platform's own.

Pure functions, decided once per request: the same canonical name is the cache key, the lookup
key at the venue service and the platform-domain test, so ``Venue.COM.``, ``venue.com:80`` and
``venue.com`` can never resolve differently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from api_gateway.errors import InvalidHost

DEFAULT_PORTS: Final = frozenset({80, 443})
MAX_HOST_BYTES: Final = 260  # a 253-byte DNS name and a port
MAX_NAME_LENGTH: Final = 253
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT: Final = re.compile(r"[0-9]{1,5}")
_DOTTED_QUAD: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# Special-use names (RFC 2606, 6761, 6762, the ICANN-reserved .internal) can never be a venue's
# public custom domain, so asking the venue service about them would only cost a lookup.
SPECIAL_USE_SUFFIXES = (
    ".test",
    ".localhost",
    ".invalid",
    ".example",
    ".local",
    ".internal",
    ".arpa",
    ".example.com",
    ".example.net",
    ".example.org",
)
SPECIAL_USE_NAMES: Final = frozenset(
    {"localhost", "example.com", "example.net", "example.org"}
    | {suffix[1:] for suffix in SPECIAL_USE_SUFFIXES}
)


@dataclass(frozen=True, slots=True)
class Authority:
    """A canonical host: lower-case name without a trailing dot, and a port unless default."""

    name: str
    port: int | None = None
    is_ip: bool = False

    @property
    def key(self) -> str:
        """What identifies the host to caches and to the venue service."""
        return self.name if self.port is None else f"{self.name}:{self.port}"


def normalize_host(raw: bytes) -> Authority:
    """The canonical form of a ``Host`` value, or ``InvalidHost``."""
    if not raw or len(raw) > MAX_HOST_BYTES:
        raise InvalidHost("the Host header is empty or too long")
    try:
        text = raw.decode("ascii").lower()
    except UnicodeDecodeError as exc:
        raise InvalidHost("the Host header must be ASCII (use punycode)") from exc
    if text.startswith("["):
        return _ip_literal(text)
    name, colon, port_text = text.rpartition(":")
    if not colon:
        name, port_text = text, ""
    port = _port(port_text)
    if name.endswith("."):
        name = name[:-1]
    if _DOTTED_QUAD.fullmatch(name):
        return Authority(_ipv4(name), port, True)
    _check_name(name)
    return Authority(name, port)


def check_target_authority(authority: bytes, host: bytes | None) -> None:
    """An absolute-form target must name the Host header's host.

    RFC 9112 §3.2.2 has a server follow the target and ignore Host, while the gateway resolves
    venues from Host: a proxy in front routing on one and the gateway on the other would
    disagree about which venue was asked for, so a request naming two hosts is refused.
    """
    if host is None or normalize_host(authority).key != normalize_host(host).key:
        raise InvalidHost("the request target names another host than the Host header")


def _port(text: str) -> int | None:
    """None for no port or a default one; an empty port (``host:``) is no port (RFC 3986)."""
    if not text:
        return None
    if not _PORT.fullmatch(text) or not 0 < int(text) <= 65535:
        raise InvalidHost("the Host header has an invalid port")
    port = int(text)
    return None if port in DEFAULT_PORTS else port


def _ip_literal(text: str) -> Authority:
    address, bracket, rest = text[1:].partition("]")
    # A zone id ("%eth0") names an interface of the client's machine, not a host of ours.
    if not bracket or "%" in address or (rest and not rest.startswith(":")):
        raise InvalidHost("the Host header has a malformed IPv6 literal")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise InvalidHost("the Host header has a malformed IPv6 literal") from exc
    return Authority(f"[{ip.compressed}]", _port(rest[1:]), True)


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:  # octets over 255, or leading zeros (octal to some parsers)
        raise InvalidHost("the Host header has a malformed IPv4 address") from exc


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidHost("the Host header has no host name, or one too long")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHost("the Host header is not a valid host name")
    if labels[-1].isdigit():  # '1.2.3' or '0x7f.1' style: an IP address to some parsers
        raise InvalidHost("the Host header's top-level label cannot be numeric")


class PlatformHosts:
    """The hosts that are the platform's own, not a venue's: looking them up is never needed.

    Configured entries are exact names or ``*.name`` (any subdomain of ``name``, not ``name``
    itself). IP addresses, single-label names (``localhost``, a cluster service name) and
    special-use names always count as the platform's.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        exact, suffixes = set(SPECIAL_USE_NAMES), list(SPECIAL_USE_SUFFIXES)
        for entry in entries:
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                exact.add(entry)
        self.exact, self.suffixes = frozenset(exact), tuple(suffixes)

    def __contains__(self, host: Authority) -> bool:
        name = host.name
        return host.is_ip or "." not in name or name in self.exact or name.endswith(self.suffixes)
