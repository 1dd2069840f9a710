"""EVAL, EVALSHA and SCRIPT for the keeper: the gateway's own Lua scripts, run by Lua 5.1.

The shared stores are written once, as Lua for Redis; the keeper runs the very same scripts
(through ``lupa``, Lua 5.1 as in Redis) instead of keeping a Python twin of each, so both modes
decide by one text. ``redis.call`` reaches the keyspace's commands with Redis's conversions:
integer → number, bulk → string, nil → false, status → {ok=...}, error → a Lua error (for
``redis.pcall``: {err=...}); a script's return value comes back number → integer (truncated),
string → bulk, array table → array (up to the first nil), {ok=...} → status, {err=...} → error,
false/nil → nil. A script runs to the end before the next command: one script is atomic, as in
Redis.

One exception, for speed: the rate-limit script, which runs for nearly every request, is
decided by ``MemoryStore`` (the same arithmetic, ``limiter.gcra``; tests/unit/test_keeper.py
checks that the two agree) in about 3 µs instead of about 30 µs through Lua.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from lupa import lua51  # type: ignore[import-untyped]

from api_gateway.keeper.keyspace import WRONG_ARGS, Keyspace
from api_gateway.limiter import Rate
from api_gateway.resp.protocol import Reply, RespError
from api_gateway.stores.memory import MemoryStore
from api_gateway.stores.redis import GCRA

NOSCRIPT: Final = RespError("NOSCRIPT No matching script. Please use EVAL.")
# KEYS and ARGV as locals of each call (globals would leak between scripts), built in Lua from
# the call's arguments: cheaper than two Python-made tables.
WRAPPER: Final = """function(nkeys, ...)
local KEYS, ARGV = {...}, {}
for i = nkeys + 1, #KEYS do ARGV[i - nkeys] = KEYS[i]; KEYS[i] = nil end
%s
end"""
PRELUDE: Final = """
local call_python, pcall_python = ...
redis = {}
function redis.call(...)
  local r = call_python(...)
  if type(r) == 'table' and r.err then error(r.err, 2) end
  return r
end
function redis.pcall(...) return pcall_python(...) end
function redis.status_reply(s) return {ok = s} end
function redis.error_reply(s) return {err = s} end
"""


class Scripts:
    """Compiled scripts by SHA-1, and the Lua state they share (as Redis shares one)."""

    def __init__(self, space: Keyspace) -> None:
        self.space = space
        self.lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=False)
        self.lua.execute(PRELUDE.encode(), self._call, self._call)
        self.compiled: dict[bytes, Any] = {}
        self.limits = MemoryStore(space.clock_ms)
        self.rates: dict[tuple[bytes, bytes, bytes], Rate] = {}
        self.gcra_sha = GCRA.sha.encode()

    def load(self, source: bytes) -> bytes:
        sha = hashlib.sha1(source).hexdigest().encode()
        if sha not in self.compiled:
            self.compiled[sha] = self.lua.eval((WRAPPER % source.decode()).encode())
        return sha

    def command(self, args: list[bytes]) -> Reply:
        name = args[0].upper()
        if name == b"SCRIPT":
            return self._script(args)
        if len(args) < 3:
            return RespError(WRONG_ARGS % name.decode().lower())
        if name == b"EVAL":
            try:
                sha = self.load(args[1])
            except Exception as exc:  # lupa's LuaSyntaxError: a reply, not the keeper's death
                return RespError(f"ERR Error compiling script: {exc}")
        else:
            sha = args[1].lower()
            if sha == self.gcra_sha and len(args) == 8 and args[2] == b"2":
                decision = self.rate_limit(args)
                return decision if isinstance(decision, RespError) else list(decision)
        function = self.compiled.get(sha)
        if function is None:
            return NOSCRIPT
        count = _count(args[2])
        if count is None or count > len(args) - 3:
            return RespError("ERR Number of keys can't be greater than number of args")
        try:
            result = function(count, *args[3:])
        except Exception as exc:  # a script's runtime error answers its caller alone
            return RespError(f"ERR Error running script: {str(exc).splitlines()[0]}")
        return self._from_lua(result)

    def rate_limit(self, args: list[bytes]) -> tuple[int, int, int, int] | RespError:
        """The rate-limit script's answer to ``EVALSHA <sha> 2 <bucket> <block> <max> <window>
        <block_ms>``."""
        numbers = (args[5], args[6], args[7])
        rate = self.rates.get(numbers)
        if rate is None:
            try:
                rate = Rate(int(args[5]), int(args[6]), int(args[7]))
            except (ValueError, ZeroDivisionError):
                return RespError("ERR Error running script: bad rate")
            self.rates[numbers] = rate
        allowed, remaining, retry_after_ms, reset_ms = self.limits.decide(
            args[3].decode("utf-8", "surrogateescape"), rate
        ).fields()
        return int(allowed), remaining, retry_after_ms, reset_ms

    def _script(self, args: list[bytes]) -> Reply:
        sub = args[1].upper() if len(args) > 1 else b""
        if sub == b"LOAD" and len(args) == 3:
            try:
                return self.load(args[2])
            except Exception as exc:
                return RespError(f"ERR Error compiling script: {exc}")
        if sub == b"EXISTS":
            return [int(sha.lower() in self.compiled) for sha in args[2:]]
        if sub == b"FLUSH":
            self.compiled.clear()
            return "OK"
        return RespError("ERR unknown SCRIPT subcommand")

    def _call(self, *args: Any) -> Any:
        """``redis.call`` from Lua: the command on the keyspace, its reply in Lua's terms."""
        words = [a if isinstance(a, bytes) else _number_text(a) for a in args]
        return self._to_lua(self.space.execute(words))

    def _to_lua(self, reply: Reply) -> Any:
        if reply is None:
            return False
        if isinstance(reply, RespError):
            return self.lua.table_from({b"err": reply.message.encode()})
        if isinstance(reply, str):
            return self.lua.table_from({b"ok": reply.encode()})
        if isinstance(reply, list):
            return self.lua.table_from([self._to_lua(item) for item in reply])
        return reply  # bytes, int

    def _from_lua(self, value: Any) -> Reply:
        if value is None or value is False:
            return None
        if value is True:
            return 1
        if isinstance(value, bytes):
            return value
        if isinstance(value, int | float):
            return int(value)
        if lua51.lua_type(value) != "table":
            return None
        items: list[Reply] = []
        for index, item in value.items():  # the array part first, in order
            if index != len(items) + 1:  # a hole ends an array; a name marks err or ok
                error, status = value[b"err"], value[b"ok"]
                if error is not None:
                    return RespError(_text(error))
                if status is not None:
                    return _text(status)
                break
            items.append(self._from_lua(item))
        return items


def _count(raw: bytes) -> int | None:
    try:
        count = int(raw)
    except ValueError:
        return None
    return count if count >= 0 else None


def _number_text(value: Any) -> bytes:
    # Redis passes a Lua number to a command as its integer digits when it is whole.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).encode()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
