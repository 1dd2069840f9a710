"""EVAL, EVALSHA and SCRIPT for the keeper: the gateway's own Lua scripts, run by Lua 5.1.

The shared stores are written once, as Lua for Redis; the keeper runs the very same scripts
(through ``lupa``, Lua 5.1 as in Redis) instead of keeping a Python twin of each, so both modes
decide by one text. ``redis.call`` reaches the keyspace's commands with Redis's conversions:
integer → number, bulk → string, nil → false, status → {ok=...}, error → a Lua error (for
``redis.pcall``: {err=...}); a script's return value comes back number → integer (truncated),
string → bulk, array table → array (up to the first nil), {ok=...} → status, {err=...} → error,
false/nil → nil. A script runs to the end before the next command: one script is atomic, as in
Redis.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from lupa import lua51  # type: ignore[import-untyped]

from api_gateway.keeper.keyspace import WRONG_ARGS, Keyspace
from api_gateway.resp.protocol import Reply, RespError

NOSCRIPT: Final = RespError("NOSCRIPT No matching script. Please use EVAL.")
# KEYS and ARGV as the function's parameters: a global per call would leak between scripts.
WRAPPER: Final = "function(KEYS, ARGV)\n%s\nend"
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
        function = self.compiled.get(sha)
        if function is None:
            return NOSCRIPT
        count = _count(args[2])
        if count is None or count > len(args) - 3:
            return RespError("ERR Number of keys can't be greater than number of args")
        keys, argv = args[3 : 3 + count], args[3 + count :]
        self.space.sweep()
        try:
            result = function(self.lua.table_from(keys), self.lua.table_from(argv))
        except Exception as exc:  # a script's runtime error answers its caller alone
            return RespError(f"ERR Error running script: {str(exc).splitlines()[0]}")
        return self._from_lua(result)

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
        if lua51.lua_type(value) == "table":
            if value[b"err"] is not None:
                return RespError(_text(value[b"err"]))
            if value[b"ok"] is not None:
                return _text(value[b"ok"])
            items: list[Reply] = []
            index = 1
            while value[index] is not None:
                items.append(self._from_lua(value[index]))
                index += 1
            return items
        return None


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
