"""Which peers are trusted proxies, and what the client address is behind them."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from api_gateway.config.settings import Network
from api_gateway.types import Request


class TrustedProxies:
    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.contains = lru_cache(maxsize=4096)(self._contains)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _contains(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, request: Request) -> str:
        """The right-most address of X-Forwarded-For that is not a trusted proxy."""
        if not self.contains(request.peer_ip):
            return request.peer_ip
        chain = request.header_list(b"x-forwarded-for")
        if not chain:
            return request.peer_ip
        for hop in reversed(chain.decode("latin-1").split(",")):
            hop = hop.strip()
            if not self.contains(hop):
                return hop if _is_ip(hop) else request.peer_ip
        return request.peer_ip


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
