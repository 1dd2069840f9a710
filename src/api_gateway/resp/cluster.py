"""Redis Cluster: every command goes to the node that owns its key's hash slot.

The slot map comes from ``CLUSTER SLOTS`` asked of the seed nodes (and of every node met since).
Each node is a ``RedisClient``: its own pipelined connection, script loading and timeout. A
``MOVED`` reply fixes that slot at once and reloads the whole map in the background (a failover
or a resharding moved it); an ``ASK`` reply (a slot half-way through a migration) is retried once
on the named node, preceded by ``ASKING``. A node that cannot answer also triggers a reload, so a
promoted replica is found without a restart.

Every command touches one slot (the rate-limit keys share the hash tag ``{<limit key>}``, the
registry's ``{<service>}``); a script given keys of different slots is refused here, before Redis
would refuse it with ``CROSSSLOT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from api_gateway.resp.client import RETRY_EVERY_S, RedisClient
from api_gateway.resp.protocol import Reply, RespError, Script, encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.slots import (
    SLOT_COUNT,
    ClusterTarget,
    key_slot,
    parse_redirect,
)

MAX_REDIRECTS: Final = 5  # a slot moving twice during one command is already rare
_SLOTS_COMMAND: Final = encode_command("CLUSTER", "SLOTS")
_PING: Final = encode_command("PING")

Send = Callable[[RedisClient, bool], Awaitable[Reply]]


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


class ClusterClient:
    """Commands to a cluster; ``scripts`` are loaded on every node's new connections."""

    def __init__(self, url: str, timeout_s: float = 0.5, scripts: Sequence[Script] = ()) -> None:
        self._target = ClusterTarget.parse(url)
        self._timeout = timeout_s
        self._scripts = tuple(scripts)
        self._nodes: dict[str, RedisClient] = {}
        self._owners: list[str] | None = None
        self._loading: asyncio.Task[list[str]] | None = None
        self._next_load = 0.0
        self._last_error = ""

    async def command(self, *args: str | bytes | int) -> Reply:
        """A single-key command (the key is its first argument), sent to the key's node."""
        key = args[1] if len(args) > 1 else b""
        slot = key_slot(key if isinstance(key, (str, bytes)) else str(key))
        command = encode_command(*args)
        return await self.routed(slot, lambda node, asking: node.request(command, asking))

    async def evaluate(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int] = ()
    ) -> Reply:
        slots = {key_slot(key) for key in keys}
        if len(slots) > 1:
            raise ValueError(f"script keys {list(keys)} are in different cluster slots")

        def send(node: RedisClient, asking: bool) -> Awaitable[Reply]:
            return node.evaluate(script, keys, args, asking)

        return await self.routed(slots.pop() if slots else 0, send)

    async def ping(self) -> None:
        """Every primary must answer; the slot map is reloaded first, to see failovers."""
        owners = await self._load_now(force=True)
        replies = await asyncio.gather(*[self._node(a).request(_PING) for a in set(owners)])
        for reply in replies:
            if reply != "PONG":
                raise StoreUnavailable(f"redis cluster answered PING with {reply!r:.100}")

    async def close(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        for node in self._nodes.values():
            await node.close()

    async def routed(self, slot: int, send: Send) -> Reply:
        """``send`` to the slot's node, following MOVED and ASK redirects."""
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

    def _node(self, address: str) -> RedisClient:
        node = self._nodes.get(address)
        if node is None:
            url = self._target.node_url(address)
            node = self._nodes[address] = RedisClient(url, self._timeout, self._scripts)
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
                *[self._node(a).request(_SLOTS_COMMAND) for a in candidates],
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
