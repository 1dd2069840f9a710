"""The shared store: GCRA in one Lua script, over a minimal pipelining RESP2 client of our own.

redis-py spends 30-60 µs of CPU per command; the hot path here is one pre-encoded EVALSHA queued
on one pipelined socket, replies matched FIFO to futures. Redis failures surface only as
``StoreUnavailable``; the caller decides whether to fail open or closed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

from api_gateway.limiter import Decision, Rate
from api_gateway.stores import StoreUnavailable
from api_gateway.timers import PatientTimeout, forgives, unread

# While Redis is down, at most one connect attempt per this; others fail fast.
RETRY_EVERY_S: Final = 0.5
MAX_LINE: Final = 64 * 1024  # a reply header longer than this is garbage, not a slow network
ARGS_CACHE_SIZE: Final = 4096  # limit keys whose encoded script arguments are kept
MAX_DIGITS: Final = 19  # a signed 64-bit integer, as Redis sends
# Reply type bytes and digits, by value (Final: compiled, they are constants, not lookups).
COLON: Final = ord(":")
ASTERISK: Final = ord("*")
DOLLAR: Final = ord("$")
MINUS: Final = ord("-")
ZERO: Final = ord("0")

# GCRA as in limiter.gcra / MemoryStore.decide, on Redis server time so that every gateway process
# shares one clock. Times are float ms. The TAT and block deadline are stored with %.17g, which
# round-trips a double exactly (Lua's default keeps 14 digits), so a fractional interval such as
# 60000/7 never drifts. The tests are written on ahead = tat - now, algebraically gcra's, so that a
# full bucket is exact in floating point: remaining = (window - ahead) * max / window - 1 gives
# max - 1, where (now - allow_at) / interval can give 4.9999 -> 4 for 6 per second. Results are
# floored like gcra's int(); Redis would truncate them anyway. Redis >= 5 replicates scripts by
# effects, which is what allows TIME before a write.
GCRA_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max, window, block = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if block > 0 then
  local until_ms = tonumber(redis.call('GET', KEYS[2]))
  if until_ms and until_ms > now then
    local wait = math.floor(until_ms - now) + 1
    return {0, 0, wait, wait}
  end
end
local interval = window / max
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local ahead = tat - now
if ahead > window - interval + 1e-6 then
  if block > 0 then
    redis.call('SET', KEYS[2], string.format('%.17g', now + block), 'PX', block)
    return {0, 0, block, block}
  end
  return {0, 0, math.floor(ahead + interval - window) + 1, math.floor(ahead) + 1}
end
local reset = math.floor(ahead + interval) + 1
redis.call('SET', KEYS[1], string.format('%.17g', tat + interval), 'PX', reset)
return {1, math.floor((window - ahead) * max / window + 1e-6) - 1, 0, reset}
"""


@dataclass(frozen=True, slots=True)
class RespError:
    """An error reply (``-ERR ...``): a value, so one bad command cannot break the pipeline."""

    message: str


Reply: TypeAlias = "str | bytes | int | RespError | list[Reply] | None"


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script run by EVALSHA, sent whole again by EVAL when Redis lost its script cache."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


class ProtocolError(Exception):
    """The server sent bytes that are not RESP2."""


class _Incomplete(Exception):
    pass


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def encode_command(*args: str | bytes | int) -> bytes:
    """A command as a RESP array of bulk strings (str is sent as UTF-8)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(_bulk(arg if isinstance(arg, bytes) else str(arg).encode()))
    return b"".join(parts)


class RespParser:
    """Incremental RESP2 reply parser: feed bytes as they arrive, get back the complete replies.

    Simple strings come back as str, bulk strings as bytes, nil as None. Splitting at CRLF once
    is cheaper in Python than scanning reply by reply; an incomplete reply is kept and re-parsed
    on the next feed (replies here are small).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._wanted = 0  # a large bulk reply is not re-parsed before all of it is here

    def feed(self, data: bytes) -> list[Reply]:
        buf = self._buf + data if self._buf else data
        if len(buf) < self._wanted:
            self._buf = buf
            return []
        lines = buf.split(b"\r\n")
        last = len(lines) - 1  # lines[last] is the unterminated tail, usually b""
        replies: list[Reply] = []
        i = 0
        try:
            while i < last:
                reply, i = self._reply(lines, i, last)
                replies.append(reply)
        except _Incomplete:
            pass
        if i == last and len(lines[last]) > MAX_LINE:
            raise ProtocolError("reply header too long")
        self._buf = b"\r\n".join(lines[i:])
        self._wanted = _bulk_end(self._buf)
        return replies

    def _reply(self, lines: list[bytes], i: int, last: int) -> tuple[Reply, int]:
        if i >= last:
            raise _Incomplete
        line, i = lines[i], i + 1
        kind = line[0] if line else 0
        if kind == COLON:
            return _integer(line), i
        if kind == ASTERISK:
            items: list[Reply] = []
            for _ in range(_integer(line)):  # a nil array (*-1) has no items either
                if i < last and lines[i][:1] == b":":  # inlined: the script's reply is integers
                    items.append(_integer(lines[i]))
                    i += 1
                    continue
                item, i = self._reply(lines, i, last)
                items.append(item)
            return (items if line != b"*-1" else None), i
        if kind == DOLLAR:
            return (None, i) if line == b"$-1" else self._bulk(lines, i, last, _integer(line))
        kind_byte = line[:1]
        if kind_byte == b"+":
            return line[1:].decode(errors="replace"), i
        if kind_byte == b"-":
            return RespError(line[1:].decode(errors="replace")), i
        raise ProtocolError(f"unknown reply type {kind_byte!r}")

    @staticmethod
    def _bulk(lines: list[bytes], i: int, last: int, size: int) -> tuple[bytes, int]:
        # split() also cut the payload at every CRLF inside it: glue the pieces back.
        if i >= last or size < 0:
            raise ProtocolError("bad bulk length") if size < 0 else _Incomplete
        pieces, length, i = [lines[i]], len(lines[i]), i + 1
        while length < size:  # joined once: gluing piece by piece is quadratic
            if i >= last:
                raise _Incomplete
            pieces.append(lines[i])
            length, i = length + 2 + len(lines[i]), i + 1
        if length != size:
            raise ProtocolError("bulk string longer than announced")
        return (pieces[0] if len(pieces) == 1 else b"\r\n".join(pieces)), i


def _integer(line: bytes) -> int:
    """The integer after a reply's type byte (``:42``, ``*4``, ``$-1``): parsed digit by digit,
    which compiled costs a fraction of slicing the line and calling ``int()``."""
    size = len(line)
    start = 2 if size > 1 and line[1] == MINUS else 1
    if start >= size or size - start > MAX_DIGITS:
        raise ProtocolError(f"invalid integer {line[:40]!r}")
    value = 0
    for index in range(start, size):
        digit = line[index] - ZERO
        if digit < 0 or digit > 9:
            raise ProtocolError(f"invalid integer {line[:40]!r}")
        value = value * 10 + digit
    return -value if start == 2 else value


def _bulk_end(buf: bytes) -> int:
    """How long ``buf`` must be to hold the bulk string it starts with (0: not known)."""
    end = buf.find(b"\r\n", 0, 32)
    if buf[:1] != b"$" or end < 0 or not buf[1:end].isdigit():
        return 0
    return end + 2 + int(buf[1:end]) + 2


class _Connection(asyncio.Protocol):
    """One socket; commands pipeline (no waiting for replies) and are answered in order."""

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
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

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
            if not future.done():  # the caller may have been cancelled
                future.set_result(reply)

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
class _Target:
    label: str
    setup: tuple[bytes, ...]  # AUTH / SELECT sent before the first command
    host: str = ""
    port: int = 6379
    path: str | None = None
    tls: bool = False


def parse_url(url: str) -> _Target:
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
        return _Target(parts.path, tuple(setup), path=parts.path)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    return _Target(f"{host}:{port}", tuple(setup), host, port, tls=parts.scheme == "rediss")


def decision_of(reply: Reply) -> Decision:
    if type(reply) is list and len(reply) == 4:  # (a match statement costs 5x more here)
        allowed, remaining, retry_after_ms, reset_ms = cast("list[int]", reply)
        return Decision(allowed == 1, remaining, retry_after_ms, reset_ms)
    if isinstance(reply, RespError):
        raise StoreUnavailable(f"redis rate-limit script failed: {reply.message}")
    raise StoreUnavailable(f"redis rate-limit script returned {reply!r:.100}")


def rate_limit_tag(key: str) -> bytes:
    """The Redis Cluster hash tag shared by a limit key's two Redis keys (bucket and block).

    ``}`` would end the tag early and ``%`` is the escape, so both are percent-encoded: the
    mapping stays one-to-one and both keys always land in the same slot. An empty key gets a
    tag that no escaped key can be, since an empty tag ``{}`` would hash the whole key.
    """
    if "}" in key or "%" in key:
        key = key.replace("%", "%25").replace("}", "%7D")
    return key.encode("utf-8", "surrogatepass") or b"%"


def _key_args(key: str) -> bytes:
    # Starts with numkeys, so EVAL can reuse everything that follows EVALSHA's sha.
    tag = rate_limit_tag(key)
    return b"$1\r\n2\r\n" + _bulk(b"gw:rl:{%s}" % tag) + _bulk(b"gw:rl:block:{%s}" % tag)


@functools.lru_cache(maxsize=1024)  # rates come from config: a handful, encoded once
def _rate_args(rate: Rate) -> bytes:
    return b"".join(_bulk(b"%d" % v) for v in (rate.max, rate.window_ms, rate.block_ms))


def _ignore_outcome(future: asyncio.Future[Reply]) -> None:
    if not future.cancelled():
        future.exception()


_ASKING: Final = encode_command("ASKING")


class RedisStore:
    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        self._target = parse_url(url)
        self._timeout = timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._next_attempt = 0.0
        self._last_error = ""
        self._closed = False
        sha = hashlib.sha1(GCRA_LUA.encode()).hexdigest().encode()
        self._evalsha = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % sha
        # Each limit key's encoded script arguments, with the rate they were encoded for:
        # the same keys (an address, a user) come back request after request.
        self._args: dict[str, tuple[Rate, bytes]] = {}

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        """Decide by the GCRA script; ``strict`` changes nothing here, this store never guesses."""
        conn = self._conn
        if conn is None or conn.error is not None:
            return decision_of(await self.gcra(key, rate))
        # What ``gcra`` does, inlined for the hit nearly every request makes: a coroutine less.
        args = self._script_args(key, rate)
        reply = await conn.send(self._evalsha + args)
        if isinstance(reply, RespError) and reply.message.startswith("NOSCRIPT"):
            reply = await self._reload(conn, args, False)
        return decision_of(reply)

    async def gcra(self, key: str, rate: Rate, asking: bool = False) -> Reply:
        """The GCRA script's raw reply for one hit (``asking``: after a cluster ASK redirect)."""
        conn = self._conn
        if conn is None or conn.error is not None:
            conn = await self._connection()
        args = self._script_args(key, rate)
        reply = await self._send(conn, self._evalsha + args, asking)
        if isinstance(reply, RespError) and reply.message.startswith("NOSCRIPT"):
            reply = await self._reload(conn, args, asking)
        return reply

    def _reload(self, conn: _Connection, args: bytes, asking: bool) -> Awaitable[Reply]:
        """The script cache was flushed (restart, SCRIPT FLUSH): load the script again, and run
        this hit by EVAL."""
        load = encode_command("SCRIPT", "LOAD", GCRA_LUA)
        self._send(conn, load, asking).add_done_callback(_ignore_outcome)
        return self._send(conn, b"*8\r\n$4\r\nEVAL\r\n" + _bulk(GCRA_LUA.encode()) + args, asking)

    def _script_args(self, key: str, rate: Rate) -> bytes:
        cached = self._args.get(key)
        if cached is not None and cached[0] is rate:
            return cached[1]
        if len(self._args) >= ARGS_CACHE_SIZE:
            self._args.clear()
        args = _key_args(key) + _rate_args(rate)
        self._args[key] = (rate, args)
        return args

    async def command(self, *args: str | bytes | int) -> Reply:
        """One command on the shared connection; an error reply comes back as a ``RespError``."""
        return await self.request(encode_command(*args))

    async def request(self, command: bytes, asking: bool = False) -> Reply:
        """One encoded command; ``asking`` sends ASKING right before it, in the same write."""
        return await self._send(await self._connection(), command, asking)

    async def evaluate(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | int] = (),
        asking: bool = False,
    ) -> Reply:
        tail = (len(keys), *keys, *args)
        reply = await self.request(encode_command("EVALSHA", script.sha, *tail), asking)
        if isinstance(reply, RespError) and reply.message.startswith("NOSCRIPT"):
            # EVAL caches the script again.
            reply = await self.request(encode_command("EVAL", script.source, *tail), asking)
        return reply

    @staticmethod
    def _send(conn: _Connection, command: bytes, asking: bool) -> asyncio.Future[Reply]:
        # ASKING holds for the next command on the connection only: nothing may come between.
        if asking:
            conn.send(_ASKING).add_done_callback(_ignore_outcome)
        return conn.send(command)

    async def ping(self) -> None:
        conn = await self._connection()
        reply = await conn.send(b"*1\r\n$4\r\nPING\r\n")
        if reply != "PONG":
            raise StoreUnavailable(f"redis at {self._target.label} answered PING with {reply!r}")

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close("closed by the gateway")
            self._conn = None
            await asyncio.sleep(0)  # let the transport finish closing before the loop might end

    async def _connection(self) -> _Connection:
        if self._conn is not None and self._conn.error is None:
            return self._conn
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

    async def _open(self) -> _Connection:
        loop, target = asyncio.get_running_loop(), self._target
        conn = _Connection(target.label, self._timeout)
        try:
            async with PatientTimeout(self._timeout):  # a busy loop is not a slow Redis
                await self._connect(conn)
            # The connection's own timer bounds these.
            load = encode_command("SCRIPT", "LOAD", GCRA_LUA)
            for reply in await asyncio.gather(*map(conn.send, (*target.setup, load))):
                if isinstance(reply, RespError):
                    raise StoreUnavailable(reply.message)
            if self._closed:
                raise StoreUnavailable("store closed while connecting")
        except (OSError, TimeoutError, ValueError, StoreUnavailable) as exc:
            conn.close("unavailable")
            self._next_attempt = loop.time() + RETRY_EVERY_S
            reason = (
                f"no answer within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            )
            self._last_error = f"redis at {target.label} unavailable: {reason}"
            raise StoreUnavailable(self._last_error) from None
        finally:
            self._connecting = None
        self._conn = conn
        return conn

    async def _connect(self, conn: _Connection) -> None:
        loop, target = asyncio.get_running_loop(), self._target
        if target.path is not None:
            await loop.create_unix_connection(lambda: conn, target.path)
        else:
            tls = ssl.create_default_context() if target.tls else None
            await loop.create_connection(lambda: conn, target.host, target.port, ssl=tls)
