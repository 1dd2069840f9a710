"""One socket to one Redis server: commands pipeline (no waiting for replies), answered in order.

Which server, and how to reach it, comes from a URL (``parse_url``). Every failure ends the
connection for good, with a reason (``error``); the client opens another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

from api_gateway.resp.protocol import ProtocolError, Reply, RespParser, encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.timers import forgives, unread


class RespConnection(asyncio.Protocol):
    """Replies are matched FIFO to futures; one timer bounds the oldest command."""

    def __init__(self, label: str, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._label, self._timeout = label, timeout_s
        self._parser = RespParser()
        # Written commands awaiting their reply, in order, each with the time it was written.
        self._pending: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None  # armed while replies are awaited
        self._due = 0.0  # when the timer was meant to fire
        self._extensions = 0  # bounds granted for a busy loop since the last reply
        self._out: list[bytes] = []  # commands queued for this tick's one write, and
        self._queued: list[asyncio.Future[Reply]] = []  # their futures
        self.error: str | None = None  # set once; the connection is then unusable

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast, never isinstance.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"connection lost ({exc or 'closed by server'})")

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except (ProtocolError, RecursionError) as exc:
            return self.close(f"sent an unreadable reply ({exc})")
        pending = self._pending
        if replies:
            self._extensions = 0
        for reply in replies:
            if not pending:
                return self.close("sent a reply nobody asked for")
            future = pending.popleft()[0]
            # No done() first (one method call per reply less); try, not contextlib.suppress
            # (COMPILED.md §12).
            try:  # noqa: SIM105
                future.set_result(reply)
            except asyncio.InvalidStateError:  # the caller was cancelled
                pass

    def send(self, command: bytes) -> asyncio.Future[Reply]:
        if self.error is not None or self._transport is None:
            raise StoreUnavailable(self.error or f"redis at {self._label}: not connected")
        future = self._loop.create_future()
        if not self._out:  # one write per loop tick: a send() syscall costs more than a hit
            self._loop.call_soon(self._flush)
        self._out.append(command)
        self._queued.append(future)
        return future

    def _flush(self) -> None:
        # The bound counts from here, not from send(): a loop busy between the two (a heavy
        # request in the same tick) has not made Redis any slower.
        if self._transport is not None and self.error is None:
            self._transport.write(b"".join(self._out))
            now = self._loop.time()
            self._pending.extend([(future, now) for future in self._queued])
            if self._timer is None:
                self._arm(now + self._timeout)
        self._out.clear()
        self._queued.clear()

    def _arm(self, when: float) -> None:
        self._due = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        # One timer per connection instead of one per command (a timer costs more than a hit):
        # replies come in order, so only the oldest command can be late, and it is due exactly
        # at its own deadline. A late reply means a hung server: everything queued behind it
        # fails now instead of waiting, and the connection is not used again.
        self._timer = None
        pending = self._pending
        if not pending:
            return
        now = self._loop.time()
        due = pending[0][1] + self._timeout
        if now >= due:
            if not self._busy_loop(now):
                return self.close(f"did not answer within {self._timeout * 1000:g} ms")
            self._extensions += 1
            due = now + self._timeout
        self._arm(due)

    def _busy_loop(self, now: float) -> bool:
        """Whether the deadline passed while the loop, not Redis, was busy: the reply may be in
        the socket, unread, or the command may have left only now (uvloop writes in a later
        phase of the tick). Then the command gets one more bound (a few at most, while no reply
        comes); a timer that fired on time over an empty socket is a Redis that did not answer.
        """
        return forgives(self._extensions, now - self._due, self._unread)

    def _unread(self) -> bool:
        """Whether the socket holds bytes (or an end) the loop has not delivered yet."""
        return unread(self._transport)

    def close(self, reason: str) -> None:
        if self.error is None:
            self.error = f"redis at {self._label} {reason}"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        waiting = [future for future, _ in self._pending] + self._queued
        self._pending.clear()
        self._out.clear()
        self._queued.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(StoreUnavailable(self.error))


@dataclass(frozen=True, slots=True)
class Target:
    """Where one Redis server is, and what to send it before the first command."""

    label: str
    setup: tuple[bytes, ...]  # AUTH / SELECT sent before the first command
    host: str = ""
    port: int = 6379
    path: str | None = None
    tls: bool = False


def parse_url(url: str) -> Target:
    """``redis[s]://[[user]:password@]host[:port][/db]`` or ``unix:///path?db=N&password=P``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    password = unquote(parts.password) if parts.password else query.get("password", [None])[0]
    db = int(parts.path.strip("/") or 0) if parts.scheme != "unix" else 0
    db = int(query.get("db", [db])[0])
    setup: list[bytes] = []
    if password is not None:
        user = [unquote(parts.username)] if parts.username else []
        setup.append(encode_command("AUTH", *user, password))
    if db:
        setup.append(encode_command("SELECT", db))
    if parts.scheme == "unix":
        return Target(parts.path, tuple(setup), path=parts.path)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    return Target(f"{host}:{port}", tuple(setup), host, port, tls=parts.scheme == "rediss")
