"""The upstream client: a pool of keep-alive HTTP/1.1 connections per instance address.

The pool picks the connection (a pooled one still fit for use, or a new one), retries once where
RFC 9110 allows it, and sweeps deadlines and idle connections; one exchange on one connection
is ``upstream_connection.py``. Socket failures are translated into ``ConnectFailed``,
``ConnectTimeout``, ``BadGateway`` and ``UpstreamTimeout``; nothing above this module sees an
``OSError`` or a parser exception.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from api_gateway.errors import THE_SERVICE, BadGateway, ConnectFailed, ConnectTimeout
from api_gateway.http import upstream_ends
from api_gateway.http.framing import ResponseFieldFilter
from api_gateway.http.upstream_connection import Address, ConnectionGone, UpstreamConnection
from api_gateway.http.upstream_phases import IDLE
from api_gateway.timers import forgives, patiently
from api_gateway.types import Body, Response

SWEEP_S: Final = 0.05
IDLE_SWEEP_TICKS: Final = 20

# Requests that may be sent again when a pooled connection turns out to be dead (RFC 9110 9.2.2).
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class PoolSettings:
    connect_timeout_s: float = 5.0
    max_idle_per_instance: int = 64
    idle_timeout_s: float = 30.0
    # Caps on a response's fields (interim heads and trailers included): bytes and field lines.
    max_head_bytes: int = 65536
    max_head_fields: int = 100
    # Response fields never passed on: exact lower-case names, and name prefixes.
    dropped_fields: frozenset[bytes] = frozenset()
    dropped_prefixes: tuple[bytes, ...] = ()


class UpstreamPool:
    """Idle keep-alive connections per upstream address, reused most-recent first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: PoolSettings) -> None:
        self.loop, self.settings = loop, settings
        self.fields = ResponseFieldFilter(settings.dropped_fields, settings.dropped_prefixes)
        self.idle: defaultdict[Address, list[UpstreamConnection]] = defaultdict(list)
        # Connections waiting for a response head, checked against their deadline by a sweep
        # rather than a timer per request (timeouts are seconds; a tick of slack is fine).
        self.busy: set[UpstreamConnection] = set()
        self._ticks = 0
        self._sweeper = loop.call_later(SWEEP_S, self._sweep)

    async def request(
        self,
        address: Address,
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
        upgrade: bool = False,
        stream_idle_s: float = 0.0,
    ) -> Response:
        """Send a complete request head and its body; return once the response head is in.

        A pooled connection that turns out to have been closed by the upstream before it
        answered anything is retried once on a new connection, for idempotent requests only.
        A WebSocket handshake (``upgrade``) goes on a new connection, never a pooled one (a
        101 takes the connection out of the pool for good), and is never sent twice.
        """
        if upgrade:
            return await self._handshake(address, head, timeout_s, method)
        replayable = method in IDEMPOTENT and isinstance(body, bytes)
        connection = self._acquire(address)
        may_retry = connection is not None and replayable
        if connection is None:
            connection = await self._connect(address, timeout_s)
        while True:
            try:
                future = connection.send(head, body, chunked, timeout_s, method)
                connection.stream_idle_s = stream_idle_s
            except ConnectionGone:
                # Nothing went out: safe to try a new connection whatever the method, once.
                if connection.reconnected:
                    raise
                connection = await self._connect(address, timeout_s)
                connection.reconnected = True
                continue
            try:
                return await future
            except BadGateway:
                if not may_retry or connection.got_bytes:
                    raise
            except asyncio.CancelledError:
                # The caller gave up (its deadline, its client gone): the answer is not wanted.
                connection.abort(BadGateway("the request was cancelled"))
                raise
            may_retry = False
            connection = await self._connect(address, timeout_s)

    async def _handshake(
        self, address: Address, head: bytes, timeout_s: float, method: str
    ) -> Response:
        connection = await self._connect(address, timeout_s)
        try:
            return await connection.send(head, b"", False, timeout_s, method, upgrade=True)
        except asyncio.CancelledError:
            connection.abort(BadGateway("the request was cancelled"))
            raise

    def _acquire(self, address: Address) -> UpstreamConnection | None:
        """The most recently used idle connection still open and with nothing to read.

        The kernel is asked (one poll, ~0.5 µs) because the loop may not have read yet what
        arrived on an idle connection: the upstream's FIN (it closed right after answering,
        without ``Connection: close``), or bytes past the end of its last response, which the
        next request would take for the start of its own response.
        """
        idle = self.idle.get(address)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            # A peer's close may be known to the transport before connection_lost has run.
            if connection.phase != IDLE or transport is None or transport.is_closing():
                continue
            poller = connection.poller
            if poller is not None and poller.poll(0):
                connection.close()  # an idle connection has nothing to read unless it is over
                continue
            return connection
        return None

    async def _connect(self, address: Address, timeout_s: float) -> UpstreamConnection:
        host, port = address
        try:
            # A loop paused while connecting is not an unreachable instance: one more bound.
            _, connection = await patiently(
                self.loop.create_connection(lambda: UpstreamConnection(self, address), host, port),
                min(self.settings.connect_timeout_s, timeout_s),
                max_extensions=1,
            )
        except TimeoutError as exc:
            # The detail reaches the client (502/504, /ready, aggregate meta): it never names the
            # instance, whose address the access log and the health log carry for operators.
            raise ConnectTimeout(f"{THE_SERVICE} did not accept the connection in time") from exc
        except OSError as exc:
            raise ConnectFailed(f"{THE_SERVICE} {connect_failure(exc)}") from exc
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        """Take back a connection whose exchange ended well (it is IDLE), or close it."""
        idle = connection.idle_list
        if len(idle) >= self.settings.max_idle_per_instance:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = connection.idle_list
        if idle and connection in idle:
            idle.remove(connection)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in [c for c in self.busy if c.deadline < now]:
            if not self._spared(connection):
                connection.abort(upstream_ends.timed_out(connection))
        self._ticks += 1
        if self._ticks % IDLE_SWEEP_TICKS == 0:
            cutoff = now - self.settings.idle_timeout_s
            for idle in self.idle.values():
                while idle and idle[0].idle_since < cutoff:
                    idle.pop(0).close()
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def _spared(self, connection: UpstreamConnection) -> bool:
        """Past the deadline, whether the upstream's bytes are in the socket, unread: they came
        in time, the loop was busy (a heavy request). Then one more sweep, a few at most per
        exchange: the deadline is the client's, real time, never extended for a silent peer."""
        poller = connection.poller
        if poller is None or not forgives(connection.forgiven, 0.0, lambda: bool(poller.poll(0))):
            return False
        connection.forgiven += 1
        return True

    def close(self) -> None:
        self._sweeper.cancel()
        for idle in self.idle.values():
            for connection in list(idle):
                connection.close()
        self.idle.clear()


# Why a connection could not be made, by errno: never the exception's text, which names the
# address (asyncio's "Connect call failed ('10.1.0.5', 3004)", a resolver's host name).
CONNECT_FAILURES: Final = {
    errno.ECONNREFUSED: "refused the connection",
    errno.ECONNRESET: "reset the connection",
    errno.EHOSTUNREACH: "could not be reached",
    errno.ENETUNREACH: "could not be reached",
}


def connect_failure(exc: OSError) -> str:
    """What went wrong connecting, in the client's terms (``THE_SERVICE`` is the subject)."""
    if isinstance(exc, socket.gaierror):
        return "could not be found (its name does not resolve)"
    return CONNECT_FAILURES.get(exc.errno or 0, "could not be connected to")
