"""One Redis server: a lazily opened pipelined connection, reopened after a failure, and scripts.

Redis failures surface only as ``StoreUnavailable``; the caller decides whether to fail open or
closed. While Redis is down, at most one connect attempt is made per ``RETRY_EVERY_S``; the
commands meanwhile fail at once with the last attempt's reason.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Sequence
from typing import Final

from api_gateway.resp.connection import RespConnection, parse_url
from api_gateway.resp.protocol import Reply, RespError, Script, encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.timers import PatientTimeout

RETRY_EVERY_S: Final = 0.5
_ASKING: Final = encode_command("ASKING")
_PING: Final = encode_command("PING")


def ignore_outcome(future: asyncio.Future[Reply]) -> None:
    """A done callback for a command whose reply nobody reads: marks its exception retrieved."""
    if not future.cancelled():
        future.exception()


class RedisClient:
    """Commands to one server; ``scripts`` are loaded on every new connection."""

    def __init__(self, url: str, timeout_s: float = 0.5, scripts: Sequence[Script] = ()) -> None:
        self.target = parse_url(url)
        self.timeout_s = timeout_s
        self.scripts = tuple(scripts)
        # The open connection, or None: read directly by the hot path (stores.redis.gcra).
        self.conn: RespConnection | None = None
        self._connecting: asyncio.Task[RespConnection] | None = None
        self._next_attempt = 0.0
        self._last_error = ""
        self._closed = False

    async def command(self, *args: str | bytes | int) -> Reply:
        """One command on the shared connection; an error reply comes back as a ``RespError``."""
        return await self.request(encode_command(*args))

    async def request(self, command: bytes, asking: bool = False) -> Reply:
        """One encoded command; ``asking`` sends ASKING right before it, in the same write."""
        return await self.send(await self.connection(), command, asking)

    async def evaluate(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes | int] = (),
        asking: bool = False,
    ) -> Reply:
        tail = (len(keys), *keys, *args)
        reply = await self.request(encode_command("EVALSHA", script.sha, *tail), asking)
        if isinstance(reply, RespError) and reply.message.startswith("NOSCRIPT"):
            # EVAL caches the script again.
            reply = await self.request(encode_command("EVAL", script.source, *tail), asking)
        return reply

    @staticmethod
    def send(conn: RespConnection, command: bytes, asking: bool) -> asyncio.Future[Reply]:
        # ASKING holds for the next command on the connection only: nothing may come between.
        if asking:
            conn.send(_ASKING).add_done_callback(ignore_outcome)
        return conn.send(command)

    def reload(
        self, conn: RespConnection, script: Script, by_eval: bytes, asking: bool
    ) -> Awaitable[Reply]:
        """The script cache was flushed (restart, SCRIPT FLUSH): load ``script`` again, and run
        this call by EVAL (``by_eval``, encoded)."""
        load = encode_command("SCRIPT", "LOAD", script.source)
        self.send(conn, load, asking).add_done_callback(ignore_outcome)
        return self.send(conn, by_eval, asking)

    async def ping(self) -> None:
        reply = await (await self.connection()).send(_PING)
        if reply != "PONG":
            raise StoreUnavailable(f"redis at {self.target.label} answered PING with {reply!r}")

    async def close(self) -> None:
        self._closed = True
        if self.conn is not None:
            self.conn.close("closed by the gateway")
            self.conn = None
            await asyncio.sleep(0)  # let the transport finish closing before the loop might end

    async def connection(self) -> RespConnection:
        """The open connection, opened now if there is none (one attempt for every waiter)."""
        if self.conn is not None and self.conn.error is None:
            return self.conn
        if self._closed:
            raise StoreUnavailable("redis store is closed")
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            if loop.time() < self._next_attempt:
                raise StoreUnavailable(self._last_error)
            self._connecting = loop.create_task(self._open())
            # Mark the outcome retrieved even if every waiter was cancelled meanwhile.
            self._connecting.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> RespConnection:
        loop, target = asyncio.get_running_loop(), self.target
        conn = RespConnection(target.label, self.timeout_s)
        try:
            async with PatientTimeout(self.timeout_s):  # a busy loop is not a slow Redis
                await self._connect(conn)
            # The connection's own timer bounds these.
            loads = [encode_command("SCRIPT", "LOAD", s.source) for s in self.scripts]
            for reply in await asyncio.gather(*map(conn.send, (*target.setup, *loads))):
                if isinstance(reply, RespError):
                    raise StoreUnavailable(reply.message)
            if self._closed:
                raise StoreUnavailable("store closed while connecting")
        except (OSError, TimeoutError, ValueError, StoreUnavailable) as exc:
            conn.close("unavailable")
            self._next_attempt = loop.time() + RETRY_EVERY_S
            reason = (
                f"no answer within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else exc
            )
            self._last_error = f"redis at {target.label} unavailable: {reason}"
            raise StoreUnavailable(self._last_error) from None
        finally:
            self._connecting = None
        self.conn = conn
        return conn

    async def _connect(self, conn: RespConnection) -> None:
        loop, target = asyncio.get_running_loop(), self.target
        if target.path is not None:
            await loop.create_unix_connection(lambda: conn, target.path)
        else:
            tls = ssl.create_default_context() if target.tls else None
            await loop.create_connection(lambda: conn, target.host, target.port, ssl=tls)
