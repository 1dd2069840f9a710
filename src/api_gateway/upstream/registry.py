"""The Redis service registry: instances register themselves with a TTL heartbeat.

Key layout (one key per service; services write it, gateways read it):

    <key_prefix>{<service>}    e.g.  gateway:registry:{ticket}

a sorted set whose members are instance URLs (``http://host:port``) and whose scores are the
instant, in milliseconds of Redis's own clock (``TIME``), at which each registration expires.
The braces are a Redis Cluster hash tag: one service's key stays in one slot whatever it grows
into. Registering is ``ZADD key <now + ttl> <url>`` plus moving the key's own expiry to its
latest member, so a service nobody heartbeats any more disappears entirely. Discovering drops
the expired members and returns the live ones. Both run as Lua scripts on Redis time, so the
clocks of gateways and services never have to agree; a service repeats its registration well
within its TTL (a third of it is a good heartbeat).

Every call is bounded by the store's short timeout; whatever goes wrong surfaces here only as
``StoreUnavailable`` (Redis cannot answer) or its subclass ``RegistryError`` (it answered
something unusable), so callers can fall back to what they knew.
"""

from __future__ import annotations

import logging
from typing import Final

from api_gateway.config.services import parse_instance
from api_gateway.config.settings import ConfigError, GatewayConfig, Instance
from api_gateway.resp.protocol import Reply, RespError, Script
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.cluster import ClusterStore, open_shared
from api_gateway.stores.redis import RedisStore

log = logging.getLogger("api_gateway.discovery")

# KEYS[1] the service's key; ARGV[1] the instance URL, ARGV[2] the TTL in ms.
REGISTER: Final = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])))
return 1
"""
)

# KEYS[1] the service's key. Returns the URLs registered and not yet expired.
DISCOVER: Final = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)


class RegistryError(StoreUnavailable):
    """Redis answered, but not with anything the registry can use."""


def registry_key(prefix: str, service: str) -> str:
    return f"{prefix}{{{service}}}"


def instance_url(instance: Instance) -> str:
    return f"http://{instance.authority}"


class Registry:
    """Register, deregister and discover the instances of services in Redis."""

    def __init__(self, store: RedisStore | ClusterStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    async def register(self, service: str, url: str, ttl_s: float) -> None:
        ttl_ms = max(1, round(ttl_s * 1000))
        key = registry_key(self.prefix, service)
        _checked(await self.store.evaluate(REGISTER, [key], [url, ttl_ms]), "register")

    async def deregister(self, service: str, url: str) -> None:
        reply = await self.store.command("ZREM", registry_key(self.prefix, service), url)
        _checked(reply, "deregister")

    async def discover(self, service: str) -> list[Instance]:
        """The live instances of ``service`` in a stable order (scores change with every
        heartbeat, the order must not); members that are not http://host:port are skipped."""
        key = registry_key(self.prefix, service)
        reply = _checked(await self.store.evaluate(DISCOVER, [key]), "discover")
        if not isinstance(reply, list):
            raise RegistryError(f"registry discover for {service} returned {reply!r:.100}")
        instances = []
        for member in reply:
            url = member.decode(errors="replace") if isinstance(member, bytes) else str(member)
            try:
                instances.append(parse_instance(url, key))
            except ConfigError as exc:
                log.debug("registry member skipped: %s", exc, extra={"service": service})
        return sorted(instances, key=lambda i: (i.host, i.port))

    async def close(self) -> None:
        await self.store.close()


def open_registry(config: GatewayConfig) -> Registry:
    """The registry in ``config.redis_url`` (which must be set), under the configured prefix."""
    return Registry(open_shared(config), config.discovery.key_prefix)


def _checked(reply: Reply, action: str) -> Reply:
    if isinstance(reply, RespError):
        raise RegistryError(f"registry {action} failed: {reply.message}")
    return reply
