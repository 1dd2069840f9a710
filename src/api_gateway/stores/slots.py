"""Redis Cluster arithmetic and addresses: key slots, redirect replies, the cluster URL.

A key's slot is CRC16 (XMODEM) of the key modulo 16384, or of its hash tag: the part between the
first ``{`` and the first ``}`` after it, when that part is not empty. Keys that share a tag share
a slot, which is what lets one script touch several of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

SLOT_COUNT: Final = 16384
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), as Redis Cluster computes it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


def key_slot(key: str | bytes) -> int:
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % SLOT_COUNT


@dataclass(frozen=True, slots=True)
class Redirect:
    ask: bool  # ASK: this command only, after ASKING; MOVED: the slot has a new owner
    slot: int
    address: str  # host:port, IPv6 hosts in brackets


def parse_redirect(message: str) -> Redirect | None:
    """``MOVED 3999 127.0.0.1:6381`` or ``ASK 3999 127.0.0.1:6381``; None for other errors."""
    parts = message.split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK") or not parts[1].isdigit():
        return None
    host, _, port = parts[2].rpartition(":")
    if not port.isdigit():
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Redirect(parts[0] == "ASK", int(parts[1]), f"{host}:{port}")


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """Where a cluster is: seed nodes, and how to reach any node (scheme and credentials)."""

    scheme: str  # redis or rediss
    userinfo: str  # "user:password@", ":password@" or ""
    seeds: tuple[str, ...]  # host:port

    @classmethod
    def parse(cls, url: str) -> ClusterTarget:
        """``redis+cluster://[[user]:password@]host:port[,host:port...]``, ``rediss+cluster://``
        for TLS; a plain ``redis[s]://`` URL names one seed. A cluster has only database 0."""
        scheme, sep, rest = url.partition("://")
        base = CLUSTER_SCHEMES.get(scheme, scheme)
        if not sep or base not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis Cluster URL scheme {scheme!r}")
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        if path.strip("/") not in ("", "0") or parse_qs(query).get("db", ["0"]) != ["0"]:
            raise ValueError("a Redis Cluster has only database 0")
        userinfo, _, hosts = netloc.rpartition("@")
        seeds = tuple(_with_port(h.strip()) for h in hosts.split(",") if h.strip())
        if not seeds:
            raise ValueError("a Redis Cluster URL needs at least one host:port")
        return cls(base, userinfo + "@" if userinfo else "", seeds)

    def node_url(self, address: str) -> str:
        return f"{self.scheme}://{self.userinfo}{address}"


def _with_port(host: str) -> str:
    has_port = host.rpartition("]")[2].count(":") == 1 if host.startswith("[") else ":" in host
    return host if has_port else f"{host}:6379"
