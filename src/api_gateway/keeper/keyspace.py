"""The keeper's data: Redis strings with expiry, and the commands the gateway sends, as data.

Pure: no I/O, time from an injected clock. Only what the gateway's stores use is here (strings,
expiry, TIME); anything else answers an error reply, as Redis answers an unknown command.

Expiry is lazy on access plus a wheel of one-second buckets swept as time passes, so a key
that is never read again still goes, and no sweep scans the whole keyspace. Each key sits in
exactly one bucket (moved when its expiry moves), so the wheel is as large as the keyspace.
When ``max_keys`` or ``max_bytes`` (a key, its value and ``ENTRY_OVERHEAD`` each) would be
passed, the keys closest to expiry (or, failing that, the oldest keys without expiry) make room:
shared state degrades by forgetting the nearest-to-forgotten first, and the keeper's memory stays
bounded whatever the workers keep in it (idempotency records are answers, up to 1 MiB each).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from api_gateway.resp.protocol import Reply, RespError

OK: Final = "OK"
# What a key costs besides its bytes (dict slots, the wheel, Python objects): a rough bound.
ENTRY_OVERHEAD: Final = 200
WRONG_ARGS: Final = "ERR wrong number of arguments for '%s' command"
NOT_INTEGER: Final = "ERR value is not an integer or out of range"
SYNTAX: Final = RespError("ERR syntax error")
BUCKET_MS: Final = 1000

Command = Callable[["Keyspace", list[bytes]], Reply]


def _integer(raw: bytes) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


class Keyspace:
    def __init__(
        self,
        clock_ms: Callable[[], float],
        max_keys: int = 2_000_000,
        max_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.clock_ms = clock_ms
        self.max_keys, self.max_bytes = max_keys, max_bytes
        self.bytes = 0
        self.values: dict[bytes, bytes] = {}
        self.expires: dict[bytes, float] = {}  # key -> absolute ms on clock_ms
        self.wheel: dict[int, set[bytes]] = {}  # expiry second -> keys expiring in it
        self.swept_to = int(clock_ms() // BUCKET_MS)
        self.evicted = 0

    # -- the commands ------------------------------------------------------------------------
    def execute(self, args: list[bytes]) -> Reply:
        """One command, as the client sent it: name first (the caller sweeps first)."""
        if not args:
            return RespError("ERR empty command")
        command = COMMANDS.get(args[0].upper())
        if command is None:
            return RespError(f"ERR unknown command '{args[0][:40].decode('ascii', 'replace')}'")
        return command(self, args)

    def get(self, key: bytes) -> bytes | None:
        value = self.values.get(key)
        if value is not None and key in self.expires and self.expires[key] <= self.clock_ms():
            self.delete(key)
            return None
        return value

    def set(self, key: bytes, value: bytes, ttl_ms: float | None) -> None:
        self.delete(key)  # its old value and expiry first: eviction must not count them
        size = len(key) + len(value) + ENTRY_OVERHEAD
        while self.values and (
            len(self.values) >= self.max_keys or self.bytes + size > self.max_bytes
        ):
            self._evict()
        self.values[key] = value
        self.bytes += size
        self._expire_at(key, None if ttl_ms is None else self.clock_ms() + ttl_ms)

    def delete(self, key: bytes) -> bool:
        if not self._forget(key):
            return False
        self._expire_at(key, None)
        return True

    def _forget(self, key: bytes) -> bool:
        value = self.values.pop(key, None)
        if value is None:
            return False
        self.bytes -= len(key) + len(value) + ENTRY_OVERHEAD
        return True

    def ttl_ms(self, key: bytes) -> int:
        """Redis's PTTL: -2 no such key, -1 no expiry."""
        if self.get(key) is None:
            return -2
        at = self.expires.get(key)
        return -1 if at is None else max(0, int(at - self.clock_ms()))

    def expire(self, key: bytes, ttl_ms: float) -> bool:
        if self.get(key) is None:
            return False
        self._expire_at(key, self.clock_ms() + ttl_ms)
        return True

    # -- expiry --------------------------------------------------------------------------------
    def sweep(self) -> None:
        """Forget every key whose second has passed (the buckets since the last sweep)."""
        now = self.clock_ms()
        current = int(now // BUCKET_MS)
        if current <= self.swept_to:
            return
        wheel = self.wheel
        if len(wheel) < current - self.swept_to:  # a long gap: visit the buckets, not seconds
            due = [second for second in wheel if second < current]
        else:
            due = [s for s in range(self.swept_to, current) if s in wheel]
        for second in due:
            for key in wheel.pop(second):
                self._forget(key)
                self.expires.pop(key, None)
        self.swept_to = current

    def _expire_at(self, key: bytes, at: float | None) -> None:
        old = self.expires.pop(key, None)
        if old is not None:
            second = int(old // BUCKET_MS) + 1
            bucket = self.wheel.get(second)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self.wheel[second]
        if at is not None:
            self.expires[key] = at
            # The bucket after the expiry's: its sweep runs only once the whole second passed.
            self.wheel.setdefault(int(at // BUCKET_MS) + 1, set()).add(key)

    def _evict(self) -> None:
        self.evicted += 1
        if self.wheel:
            second = min(self.wheel)
            bucket = self.wheel[second]
            key = bucket.pop()
            if not bucket:
                del self.wheel[second]
            self.expires.pop(key, None)
            self._forget(key)
            return
        self._forget(next(iter(self.values)))


def _ping(space: Keyspace, args: list[bytes]) -> Reply:
    return "PONG" if len(args) == 1 else args[1]


def _ok(space: Keyspace, args: list[bytes]) -> Reply:
    return OK  # AUTH, SELECT, CLIENT: one private keyspace, nothing to choose


def _get(space: Keyspace, args: list[bytes]) -> Reply:
    if len(args) != 2:
        return RespError(WRONG_ARGS % "get")
    return space.get(args[1])


def _set(space: Keyspace, args: list[bytes]) -> Reply:
    """SET key value [NX|XX] [PX ms|EX s] [GET]"""
    if len(args) < 3:
        return RespError(WRONG_ARGS % "set")
    key, value = args[1], args[2]
    only_new = only_old = want_old = False
    ttl_ms: float | None = None
    options = [a.upper() for a in args[3:]]
    i = 0
    while i < len(options):
        option = options[i]
        if option in (b"PX", b"EX") and i + 1 < len(options):
            amount = _integer(options[i + 1])
            if amount is None or amount <= 0:
                return RespError("ERR invalid expire time in 'set' command")
            ttl_ms = amount * (1000 if option == b"EX" else 1)
            i += 2
            continue
        if option == b"NX":
            only_new = True
        elif option == b"XX":
            only_old = True
        elif option == b"GET":
            want_old = True
        else:
            return SYNTAX
        i += 1
    if only_new and only_old:
        return SYNTAX
    old = space.get(key)
    if (only_new and old is not None) or (only_old and old is None):
        return old if want_old else None
    space.set(key, value, ttl_ms)
    return old if want_old else OK


def _del(space: Keyspace, args: list[bytes]) -> Reply:
    if len(args) < 2:
        return RespError(WRONG_ARGS % "del")
    return sum(space.delete(key) for key in args[1:])


def _exists(space: Keyspace, args: list[bytes]) -> Reply:
    if len(args) < 2:
        return RespError(WRONG_ARGS % "exists")
    return sum(space.get(key) is not None for key in args[1:])


def _mget(space: Keyspace, args: list[bytes]) -> Reply:
    if len(args) < 2:
        return RespError(WRONG_ARGS % "mget")
    return [space.get(key) for key in args[1:]]


def _pexpire(space: Keyspace, args: list[bytes]) -> Reply:
    amount = _integer(args[2]) if len(args) == 3 else None
    if amount is None:
        return RespError(WRONG_ARGS % "pexpire" if len(args) != 3 else NOT_INTEGER)
    if amount <= 0:
        return int(space.delete(args[1]))
    return int(space.expire(args[1], amount))


def _pttl(space: Keyspace, args: list[bytes]) -> Reply:
    if len(args) != 2:
        return RespError(WRONG_ARGS % "pttl")
    return space.ttl_ms(args[1])


def _time(space: Keyspace, args: list[bytes]) -> Reply:
    micros = int(space.clock_ms() * 1000)
    return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]


def _dbsize(space: Keyspace, args: list[bytes]) -> Reply:
    return len(space.values)


COMMANDS: Final[dict[bytes, Command]] = {
    b"PING": _ping,
    b"AUTH": _ok,
    b"SELECT": _ok,
    b"CLIENT": _ok,
    b"GET": _get,
    b"SET": _set,
    b"DEL": _del,
    b"EXISTS": _exists,
    b"MGET": _mget,
    b"PEXPIRE": _pexpire,
    b"PTTL": _pttl,
    b"TIME": _time,
    b"DBSIZE": _dbsize,
}
