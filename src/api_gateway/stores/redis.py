"""The shared rate-limit store: GCRA in one Lua script, on Redis's clock, over our own client.

The hot path is one pre-encoded EVALSHA queued on the client's pipelined connection
(``api_gateway.resp``). Redis failures surface only as ``StoreUnavailable``; the caller decides
whether to fail open or closed.
"""

from __future__ import annotations

from typing import Final, cast

from api_gateway.limiter import Decision, Rate
from api_gateway.memo import Memo
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import Reply, RespError, Script, bulk
from api_gateway.stores import StoreUnavailable

ARGS_CACHE_SIZE: Final = 16_384  # limit keys whose encoded script arguments are kept
RATES_KEPT: Final = 64  # encoded rates kept (a configuration has a handful)
# A key's length over its hash tag's: ``gw:rl:{`` ``}`` and ``gw:rl:block:{`` ``}``.
BUCKET_KEY_EXTRA: Final = 8
BLOCK_KEY_EXTRA: Final = 14

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

GCRA: Final = Script(GCRA_LUA)
# Both commands carry 2 keys and 3 arguments; the encoded arguments (``ScriptArgs``) follow.
_EVALSHA: Final = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % GCRA.sha.encode()
_EVAL: Final = b"*8\r\n$4\r\nEVAL\r\n" + bulk(GCRA_LUA.encode())


async def gcra(client: RedisClient, args: bytes, asking: bool = False) -> Reply:
    """The GCRA script's raw reply for one hit, ``args`` from ``ScriptArgs.of`` (``asking``:
    after a cluster ASK redirect)."""
    conn = client.conn
    if conn is None or conn.error is not None:
        conn = await client.connection()
    reply = await client.send(conn, _EVALSHA + args, asking)
    if isinstance(reply, RespError) and reply.message.startswith("NOSCRIPT"):
        reply = await client.reload(conn, GCRA, _EVAL + args, asking)
    return reply


def decision_of(reply: Reply) -> Decision:
    if type(reply) is list and len(reply) == 4:  # not a match statement: COMPILED.md §8
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
    # Starts with numkeys, so EVAL can reuse everything that follows EVALSHA's sha. Joined
    # once (COMPILED.md §12).
    tag = rate_limit_tag(key)
    size = len(tag)
    return b"".join(
        [
            b"$1\r\n2\r\n$",
            str(size + BUCKET_KEY_EXTRA).encode(),
            b"\r\ngw:rl:{",
            tag,
            b"}\r\n$",
            str(size + BLOCK_KEY_EXTRA).encode(),
            b"\r\ngw:rl:block:{",
            tag,
            b"}\r\n",
        ]
    )


def _rate_args(rate: Rate) -> bytes:
    return b"".join([bulk(b"%d" % v) for v in (rate.max, rate.window_ms, rate.block_ms)])


class ScriptArgs:
    """Each limit key's encoded script arguments, with the rate they were encoded for: the same
    keys (an address, a user) come back request after request."""

    def __init__(self) -> None:
        self._args: Memo[str, tuple[Rate, bytes]] = Memo(ARGS_CACHE_SIZE)
        # Each rate's encoded arguments, found by identity: rates come from the configuration (a
        # handful), and a Rate's own hash is a Python call (a dataclass's).
        self._rates: list[tuple[Rate, bytes]] = []

    def of(self, key: str, rate: Rate) -> bytes:
        cached = self._args.get(key)
        if cached is not None and cached[0] is rate:
            return cached[1]
        args = _key_args(key) + self.rate_args(rate)
        self._args.put(key, (rate, args))
        return args

    def rate_args(self, rate: Rate) -> bytes:
        for known, encoded in self._rates:
            if known is rate:
                return encoded
        if len(self._rates) >= RATES_KEPT:  # rates of configurations reloaded since
            self._rates = []
        encoded = _rate_args(rate)
        self._rates.append((rate, encoded))
        return encoded


class RedisStore(RedisClient):
    """The rate-limit store on one Redis server: a client that also decides hits.

    A client itself (not one held), so the response cache, the API keys and the registry share
    its connection, and a hit reads the connection without a hop.
    """

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        super().__init__(url, timeout_s, (GCRA,))
        self.script_args = ScriptArgs()

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        """Decide by the GCRA script; ``strict`` changes nothing here, this store never guesses."""
        return decision_of(await gcra(self, self.script_args.of(key, rate)))
