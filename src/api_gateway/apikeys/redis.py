"""The key store in Redis: one hash per key (``<key_prefix><id>``) and a set of the ids
(``<key_prefix>index``) for ``apikey list``. Every command names one key, so a Redis Cluster
routes each to its node."""

from __future__ import annotations

import asyncio
from typing import Final

from api_gateway.apikeys.records import KeyRecord, record_of
from api_gateway.resp.protocol import Reply, RespError
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.cluster import ClusterStore
from api_gateway.stores.redis import RedisStore

INDEX: Final = "index"  # ids are 12 characters: no id is this


class RedisKeys:
    def __init__(self, conn: RedisStore | ClusterStore, prefix: str) -> None:
        self.conn, self.prefix = conn, prefix

    async def get(self, key_id: str) -> KeyRecord | None:
        reply = await self._command("HGETALL", self.prefix + key_id)
        if not isinstance(reply, list) or not reply:
            return None
        text = [item.decode() if isinstance(item, bytes) else str(item) for item in reply]
        try:
            return record_of(dict(zip(text[::2], text[1::2], strict=True)))
        except ValueError:
            return None

    async def put(self, record: KeyRecord) -> None:
        pairs = [part for item in record.to_fields().items() for part in item]
        await self._command("HSET", self.prefix + record.id, *pairs)
        await self._command("SADD", self.prefix + INDEX, record.id)

    async def records(self) -> list[KeyRecord]:
        reply = await self._command("SMEMBERS", self.prefix + INDEX)
        ids = (
            sorted(i.decode() for i in reply if isinstance(i, bytes))
            if isinstance(reply, list)
            else []
        )
        found = await asyncio.gather(*map(self.get, ids))
        return sorted((r for r in found if r is not None), key=lambda r: (r.created_at, r.id))

    async def touch(self, key_id: str, when_s: float) -> None:
        await self._command("HSET", self.prefix + key_id, "last_used", repr(when_s))

    async def close(self) -> None:
        await self.conn.close()

    async def _command(self, *args: str) -> Reply:
        reply = await self.conn.command(*args)
        if isinstance(reply, RespError):
            raise StoreUnavailable(f"API key store in Redis: {reply.message}")
        return reply
