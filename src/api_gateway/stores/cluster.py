"""Redis Cluster: every command goes to the node that owns its key's hash slot.

The slot map comes from ``CLUSTER SLOTS`` asked of the seed nodes (and of every node met since).
Each node is a ``RedisStore``: its own pipelined connection, script loading and timeout. A
``MOVED`` reply fixes that slot at once and reloads the whole map in the background (a failover
or a resharding moved it); an ``ASK`` reply (a slot half-way through a migration) is retried once
on the named node, preceded by ``ASKING``. A node that cannot answer also triggers a reload, so a
promoted replica is found without a restart.

Every command touches one slot: the rate-limit keys share the hash tag ``{<limit key>}`` and the
registry's ``{<service>}``; a script given keys of different slots is refused here, before Redis
would refuse it with ``CROSSSLOT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from api_gateway.config.settings import GatewayConfig
from api_gateway.limiter import Decision, Rate
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.redis import (
    RETRY_EVERY_S,
    RedisStore,
    Reply,
    RespError,
    Script,
    decision_of,
    encode_command,
    rate_limit_tag,
)
from api_gateway.stores.slots import (
    SLOT_COUNT,
    ClusterTarget,
    is_cluster_url,
    key_slot,
    parse_redirect,
)

MAX_REDIRECTS: Final = 5  # a slot moving twice during one command is already rare
_SLOTS_COMMAND: Final = encode_command("CLUSTER", "SLOTS")
_PING: Final = encode_command("PING")

Send = Callable[[RedisStore, bool], Awaitable[Reply]]


def slot_table(reply: Reply, asked: str) -> list[str]:
    """The owner (``host:port``) of every slot, from a ``CLUSTER SLOTS`` reply."""
    if not isinstance(reply, list):
        raise StoreUnavailable(f"redis cluster at {asked}: CLUSTER SLOTS answered {reply!r:.100}")
    owners = [""] * SLOT_COUNT
    for entry in reply:
        start, end, address = _slot_range(entry, asked)
        owners[start : end + 1] = [address] * (end - start + 1)
    if "" in owners:
        raise StoreUnavailable(f"redis cluster at {asked}: not every slot is served")
    return owners


def _slot_range(entry: Reply, asked: str) -> tuple[int, int, str]:
    # [start, end, [host, port, node id, ...], replicas...]
    match entry:
        case [int(start), int(end), [bytes(host) | str(host), int(port), *_], *_] if (
            0 <= start <= end < SLOT_COUNT
        ):
            name = host.decode() if isinstance(host, bytes) else host
        case _:
            raise StoreUnavailable(f"redis cluster at {asked}: unreadable slots {entry!r:.100}")
    if name in ("", "?"):  # the node does not know its own address: it is the one asked
        name = asked.rpartition(":")[0]
    return start, end, f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


class ClusterStore:
    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        self._target = ClusterTarget.parse(url)
        self._timeout = timeout_s
        self._nodes: dict[str, RedisStore] = {}
        self._owners: list[str] | None = None
        self._loading: asyncio.Task[list[str]] | None = None
        self._next_load = 0.0
        self._last_error = ""

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        slot = key_slot(b"{%s}" % rate_limit_tag(key))  # the tag of both of the script's keys

        def send(node: RedisStore, asking: bool) -> Awaitable[Reply]:
            return node.gcra(key, rate, asking)

        return decision_of(await self._routed(slot, send))

    async def command(self, *args: str | bytes | int) -> Reply:
        """A single-key command (the key is its first argument), sent to the key's node."""
        key = args[1] if len(args) > 1 else b""
        slot = key_slot(key if isinstance(key, (str, bytes)) else str(key))
        command = encode_command(*args)
        return await self._routed(slot, lambda node, asking: node.request(command, asking))

    async def evaluate(
        self, script: Script, keys: Sequence[str], args: Sequence[str | int] = ()
    ) -> Reply:
        slots = {key_slot(key) for key in keys}
        if len(slots) > 1:
            raise ValueError(f"script keys {list(keys)} are in different cluster slots")

        def send(node: RedisStore, asking: bool) -> Awaitable[Reply]:
            return node.evaluate(script, keys, args, asking)

        return await self._routed(slots.pop() if slots else 0, send)

    async def ping(self) -> None:
        """Every primary must answer; the slot map is reloaded first, to see failovers."""
        owners = await self._load_now(force=True)
        replies = await asyncio.gather(*(self._node(a).request(_PING) for a in set(owners)))
        for reply in replies:
            if reply != "PONG":
                raise StoreUnavailable(f"redis cluster answered PING with {reply!r:.100}")

    async def close(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        for node in self._nodes.values():
            await node.close()

    async def _routed(self, slot: int, send: Send) -> Reply:
        owners = self._owners or await self._load_now()
        node, asking = self._node(owners[slot]), False
        for _ in range(MAX_REDIRECTS):
            try:
                reply = await send(node, asking)
            except StoreUnavailable:
                self._load_soon()  # a dead primary may have been replaced: learn the new map
                raise
            redirect = parse_redirect(reply.message) if isinstance(reply, RespError) else None
            if redirect is None:
                return reply
            if not redirect.ask:
                owners[redirect.slot] = redirect.address
                self._load_soon()
            node, asking = self._node(redirect.address), redirect.ask
        raise StoreUnavailable(f"redis cluster: slot {slot} redirected {MAX_REDIRECTS} times")

    def _node(self, address: str) -> RedisStore:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = RedisStore(self._target.node_url(address), self._timeout)
        return node

    async def _load_now(self, force: bool = False) -> list[str]:
        """The slot map, loaded now; without ``force``, not again within the retry back-off."""
        if self._loading is None:
            if not force and asyncio.get_running_loop().time() < self._next_load:
                raise StoreUnavailable(self._last_error)
            self._start_load()
        assert self._loading is not None
        return await asyncio.shield(self._loading)

    def _load_soon(self) -> None:
        # One load at a time, and none within the back-off of the last: a storm of MOVED
        # replies costs one CLUSTER SLOTS.
        if self._loading is None and asyncio.get_running_loop().time() >= self._next_load:
            self._start_load()

    def _start_load(self) -> None:
        self._loading = asyncio.get_running_loop().create_task(self._load())
        # Mark the outcome retrieved even if every waiter was cancelled meanwhile.
        self._loading.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _load(self) -> list[str]:
        candidates = list(dict.fromkeys([*self._target.seeds, *self._nodes]))
        try:
            replies = await asyncio.gather(
                *(self._node(a).request(_SLOTS_COMMAND) for a in candidates),
                return_exceptions=True,
            )
        finally:
            self._loading = None
            self._next_load = asyncio.get_running_loop().time() + RETRY_EVERY_S
        errors = []
        for address, reply in zip(candidates, replies, strict=True):
            if isinstance(reply, StoreUnavailable):
                errors.append(str(reply))
                continue
            if isinstance(reply, BaseException):
                raise reply
            try:
                self._owners = slot_table(reply, address)
            except StoreUnavailable as exc:
                errors.append(str(exc))
                continue
            return self._owners
        self._last_error = "redis cluster unavailable: " + "; ".join(errors)
        raise StoreUnavailable(self._last_error)


def open_shared(config: GatewayConfig) -> RedisStore | ClusterStore:
    """The configured Redis (``redis.url``, which must be set): one server or a cluster."""
    assert config.redis_url is not None
    timeout_s = config.redis_timeout_ms / 1000
    if config.redis_cluster or is_cluster_url(config.redis_url):
        return ClusterStore(config.redis_url, timeout_s)
    return RedisStore(config.redis_url, timeout_s)
