"""The rate-limit store on a Redis Cluster, and the choice between one server and a cluster.

A limit key's two Redis keys share the hash tag ``{<limit key>}``, so the GCRA script touches one
slot and goes to the node that owns it (``resp.cluster`` routes and follows redirects).
"""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.config.settings import GatewayConfig
from api_gateway.limiter import Decision, Rate
from api_gateway.resp.client import RedisClient
from api_gateway.resp.cluster import ClusterClient
from api_gateway.resp.protocol import Reply
from api_gateway.stores.redis import GCRA, RedisStore, ScriptArgs, decision_of, gcra, rate_limit_tag
from api_gateway.stores.slots import is_cluster_url, key_slot


class ClusterStore(ClusterClient):
    """The rate-limit store on a cluster: a cluster client that also decides hits."""

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        super().__init__(url, timeout_s, (GCRA,))
        self.script_args = ScriptArgs()

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        slot = key_slot(b"{%s}" % rate_limit_tag(key))  # the tag of both of the script's keys
        args = self.script_args.of(key, rate)

        def send(node: RedisClient, asking: bool) -> Awaitable[Reply]:
            return gcra(node, args, asking)

        return decision_of(await self.routed(slot, send))


def open_shared(config: GatewayConfig) -> RedisStore | ClusterStore:
    """The configured Redis (``redis.url``, which must be set): one server or a cluster."""
    assert config.redis_url is not None
    timeout_s = config.redis_timeout_ms / 1000
    if config.redis_cluster or is_cluster_url(config.redis_url):
        return ClusterStore(config.redis_url, timeout_s)
    return RedisStore(config.redis_url, timeout_s)
