"""WebSocket at the edge (RFC 6455): which requests are handshakes, whether one is well formed,
how many tunnels are open, and the one frame the gateway itself ever writes (a close).

Everything here is pure: the tunnel that moves the bytes is ``http/tunnel.py``. The gateway
never parses messages; it follows frame boundaries of the upstream-to-client direction only so
that, going away, it can put its close frame between two frames and not inside one.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from api_gateway.errors import BadRequest, Overloaded, RateLimited
from api_gateway.types import Request

NOT_AN_UPGRADE: Final = 0
WEBSOCKET: Final = 1
OTHER_PROTOCOL: Final = 2  # h2c and the like: served as plain HTTP/1.1, Upgrade removed

VERSION: Final = b"13"
GOING_AWAY: Final = 1001
CLOSE_OPCODE: Final = 0x8
KEY_BYTES: Final = 16  # Sec-WebSocket-Key is 16 random bytes, base64 (RFC 6455 §4.1)


def upgrade_kind(request: Request) -> int:
    """Whether the request asks to switch protocols, and to which kind."""
    upgrade = request.header_list(b"upgrade")
    if upgrade is None:
        return NOT_AN_UPGRADE
    connection = request.header_list(b"connection") or b""
    if b"upgrade" not in tokens(connection):
        return NOT_AN_UPGRADE  # Upgrade without Connection: upgrade is no request to switch
    return WEBSOCKET if b"websocket" in tokens(upgrade) else OTHER_PROTOCOL


def tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def check_handshake(request: Request) -> None:
    """A handshake the upstream could accept, or 400 saying why (RFC 6455 §4.2.1)."""
    if request.method != "GET":
        raise BadRequest("a WebSocket handshake is a GET")
    if request.content_length or request.header(b"transfer-encoding") is not None:
        raise BadRequest("a WebSocket handshake has no body")
    keys = [value for name, value in request.headers if name == b"sec-websocket-key"]
    if len(keys) != 1 or not is_key(keys[0]):
        raise BadRequest("a WebSocket handshake needs one Sec-WebSocket-Key of 16 bytes")
    versions = [value for name, value in request.headers if name == b"sec-websocket-version"]
    if versions != [VERSION]:
        raise BadRequest(
            "the gateway speaks WebSocket version 13",
            headers=[(b"sec-websocket-version", VERSION)],
        )


def is_key(value: bytes) -> bool:
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A server-to-client close frame (FIN, opcode 8, unmasked), its code and short reason."""
    payload = code.to_bytes(2, "big") + reason[:123]
    return bytes((0x80 | CLOSE_OPCODE, len(payload))) + payload


class FrameBoundary:
    """Follows frame boundaries in a byte stream: whether the bytes so far end exactly
    between two frames. Only headers are read: payloads are counted, never copied."""

    __slots__ = ("header", "remaining")

    def __init__(self) -> None:
        self.header = b""  # the bytes of a frame header not complete yet
        self.remaining = 0  # payload bytes of the current frame still to come

    @property
    def at_boundary(self) -> bool:
        return not self.header and not self.remaining

    def feed(self, data: bytes) -> None:
        at, end = 0, len(data)
        while at < end:
            if self.remaining:
                taken = min(self.remaining, end - at)
                self.remaining -= taken
                at += taken
                continue
            # Inside a header: take what it still lacks (two bytes say how long it is).
            size = header_size(self.header)
            piece = data[at : at + (2 if size is None else size) - len(self.header)]
            self.header += piece
            at += len(piece)
            size = header_size(self.header)
            if size is not None and len(self.header) == size:
                self.remaining = payload_length(self.header)
                self.header = b""


def header_size(header: bytes) -> int | None:
    """The full size of a frame header that starts with ``header``, or None: need more."""
    if len(header) < 2:
        return None
    length = header[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return size + 4 if header[1] & 0x80 else size


def payload_length(header: bytes) -> int:
    length = header[1] & 0x7F
    if length == 126:
        return int.from_bytes(header[2:4], "big")
    if length == 127:
        return int.from_bytes(header[2:10], "big")
    return length


class OpenTunnels:
    """How many tunnels are open, per user on each route and in the worker: a handshake past
    either bound is refused before the upstream hears of it."""

    def __init__(self, max_per_worker: int) -> None:
        self.max_per_worker = max_per_worker
        self.total = 0
        self.by_user: dict[str, int] = {}

    def acquire(self, key: str, max_per_user: int) -> TunnelSlot:
        """Count one more tunnel for ``key``, until the slot returned is released."""
        if self.total >= self.max_per_worker:
            raise Overloaded("the gateway holds as many WebSockets as it may")
        held = self.by_user.get(key, 0)
        if held >= max_per_user:
            raise RateLimited(
                f"at most {max_per_user} WebSockets open at once", 1, limit=max_per_user
            )
        self.by_user[key] = held + 1
        self.total += 1
        return TunnelSlot(self, key)

    def release(self, key: str) -> None:
        self.total -= 1
        left = self.by_user[key] - 1
        if left:
            self.by_user[key] = left
        else:
            del self.by_user[key]


class TunnelSlot:
    """One open tunnel's place in the counts; released once, however often it is asked."""

    __slots__ = ("key", "open", "tunnels")

    def __init__(self, tunnels: OpenTunnels, key: str) -> None:
        self.tunnels, self.key, self.open = tunnels, key, True

    def release(self) -> None:
        if self.open:
            self.open = False
            self.tunnels.release(self.key)
