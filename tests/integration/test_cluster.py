"""Against a real three-node Redis Cluster: limits route to the owner of their slot, follow MOVED
and ASK, stay exact across gateway processes; the service registry and the revocation check (each
key on its own node) work on the cluster too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from support.burst import burst
from support.cluster import RedisCluster, cluster_tools_available
from support.gateway import Fleet, gateways_sharing, running_gateway
from support.metrics import metrics_text
from support.registry import wait_for
from support.upstream import RecordingUpstream

from api_gateway.config.settings import Instance
from api_gateway.errors import TokenRevoked
from api_gateway.limiter import Decision, Rate
from api_gateway.revocation import REVOKED_PREFIXES, Revocations
from api_gateway.stores.cluster import ClusterStore
from api_gateway.stores.memory import MemoryStore
from api_gateway.stores.slots import key_slot
from api_gateway.types import Claims
from api_gateway.upstream.registry import Registry, registry_key

pytestmark = pytest.mark.skipif(
    not cluster_tools_available(), reason="redis-server and redis-cli are needed for a cluster"
)

FIVE_A_MINUTE = Rate(5, 60_000, 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def node_ids(cluster: RedisCluster) -> dict[int, str]:
    return {port: cluster.cli(port, "CLUSTER", "MYID").strip() for port in cluster.ports}


def owner_port(cluster: RedisCluster, slot: int) -> int:
    """The node serving ``slot``, as it says itself in ``CLUSTER NODES``."""
    for port in cluster.ports:
        lines = cluster.cli(port, "CLUSTER", "NODES").splitlines()
        myself = next(line for line in lines if "myself" in line.split()[2])
        for served in myself.split()[8:]:  # "0-5460" or "42"; "[...]" is a migration
            low, _, high = served.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return port
    raise AssertionError(f"no node owns slot {slot}")


def test_limits_on_keys_of_every_node_decide_like_memory(cluster: RedisCluster) -> None:
    keys = [f"spread:{i}" for i in range(12)]

    async def story() -> tuple[dict[str, list[Decision]], list[Decision]]:
        store = ClusterStore(cluster.url)
        seen = {key: [await store.hit(key, FIVE_A_MINUTE) for _ in range(7)] for key in keys}
        await store.ping()
        await store.close()
        memory = MemoryStore()
        return seen, [await memory.hit("k", FIVE_A_MINUTE) for _ in range(7)]

    seen, in_memory = uvloop.run(story())
    owners = {owner_port(cluster, key_slot("{" + key + "}")) for key in keys}
    assert owners == set(cluster.ports)  # the keys really are spread over all three nodes
    for decisions in seen.values():
        assert [d.allowed for d in decisions] == [d.allowed for d in in_memory]
        assert [d.remaining for d in decisions] == [d.remaining for d in in_memory]


def test_concurrent_hits_on_one_key_are_counted_exactly(cluster: RedisCluster) -> None:
    async def story() -> list[Decision]:
        stores = [ClusterStore(cluster.url, timeout_s=2), ClusterStore(cluster.url, timeout_s=2)]
        decisions = await asyncio.gather(
            *(stores[i % 2].hit("exact", Rate(100, 60_000, 0)) for i in range(300))
        )
        for store in stores:
            await store.close()
        return list(decisions)

    assert sum(d.allowed for d in uvloop.run(story())) == 100


def test_a_stale_slot_map_is_corrected_by_moved(cluster: RedisCluster) -> None:
    async def story() -> list[bool]:
        store = ClusterStore(cluster.url)
        await store.ping()  # loads the map...
        assert store._owners is not None
        wrong = f"127.0.0.1:{cluster.ports[0]}"
        store._owners[:] = [wrong] * len(store._owners)  # ...which now says node 1 owns all
        allowed = [(await store.hit(f"moved:{i}", FIVE_A_MINUTE)).allowed for i in range(6)]
        await asyncio.sleep(0.05)  # the background reload
        assert set(store._owners) == {f"127.0.0.1:{p}" for p in cluster.ports}
        await store.close()
        return allowed

    assert uvloop.run(story()) == [True] * 6


def test_a_slot_being_migrated_is_followed_by_ask(cluster: RedisCluster) -> None:
    key = registry_key("gateway:registry:", "migrating")
    slot = key_slot(key)
    source = owner_port(cluster, slot)
    target = next(port for port in cluster.ports if port != source)
    ids = node_ids(cluster)
    cluster.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
    cluster.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])

    async def story() -> list[Instance]:
        registry = Registry(ClusterStore(cluster.url), "gateway:registry:")
        try:  # the key is not on the source: it answers ASK, and the target takes the write
            await registry.register("migrating", "http://10.0.0.1:3004", 30)
            return await registry.discover("migrating")
        finally:
            await registry.close()

    try:
        found = uvloop.run(story())
        on_target = cluster.cli(target, "CLUSTER", "COUNTKEYSINSLOT", str(slot)).strip()
    finally:
        for port in (source, target):
            cluster.cli(port, "CLUSTER", "SETSLOT", str(slot), "STABLE")
    assert found == [Instance("10.0.0.1", 3004)]
    assert on_target == "1"
    cluster.cli(target, "CLUSTER", "DELKEYSINSLOT", str(slot))


def test_the_registry_works_on_the_cluster(cluster: RedisCluster) -> None:
    async def story() -> dict[str, list[Instance]]:
        registry = Registry(ClusterStore(cluster.url), "test:")
        services = [f"svc{i}" for i in range(8)]  # keys on every node
        for i, service in enumerate(services):
            await registry.register(service, f"http://10.0.0.{i}:3004", 30)
        await registry.deregister("svc0", "http://10.0.0.0:3004")
        seen = {service: await registry.discover(service) for service in services}
        await registry.close()
        return seen

    seen = uvloop.run(story())
    assert seen["svc0"] == []
    assert seen["svc7"] == [Instance("10.0.0.7", 3004)]
    assert all(len(instances) == 1 for name, instances in seen.items() if name != "svc0")


def test_two_gateways_on_the_cluster_let_exactly_the_limit_through(
    service_fleet: Fleet, tmp_path: Path, cluster: RedisCluster
) -> None:
    with gateways_sharing(tmp_path, service_fleet.urls(), cluster.url, 100) as (first, second):
        statuses = burst([first.port, second.port], 300, "/api/v1/search/q")
        metrics = metrics_text(first) + metrics_text(second)

    assert statuses.count(200) == 100
    assert statuses.count(429) == 200
    assert "gateway_ratelimit_fallback_decisions_total 0" in metrics
    assert "gateway_ratelimit_fallback_decisions_total 1" not in metrics


def test_a_gateway_discovers_instances_registered_in_the_cluster(
    service_fleet: Fleet, tmp_path: Path, cluster: RedisCluster
) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{cluster.ports[1]}", "REDIS_CLUSTER": "true"}
    config = {"discovery": {"cache_ttl_ms": 100}}

    async def register(url: str) -> None:
        registry = Registry(ClusterStore(cluster.url), "gateway:registry:")
        await registry.register("search", url, 30)
        await registry.close()

    with (
        RecordingUpstream("registered") as registered,
        running_gateway(tmp_path, service_fleet.urls(), config=config, env=env) as gateway,
    ):
        asyncio.run(register(registered.url))
        served = wait_for(
            lambda: gateway.get("/api/v1/search/q").json().get("service"),
            lambda name: name == "registered",
        )
    assert served == "registered"


def test_revocation_checks_ask_each_key_on_its_own_node(cluster: RedisCluster) -> None:
    """A token's two keys hash to different slots (one EXISTS of both would be CROSSSLOT)."""
    tokens = [f"cluster.token.{n}" for n in range(3)]
    slots = {token: {key_slot(prefix + token) for prefix in REVOKED_PREFIXES} for token in tokens}
    assert all(len(found) == 2 for found in slots.values())

    async def story() -> list[bool]:
        store = ClusterStore(cluster.url)
        revocations = Revocations(store, 60.0, lambda: 1000.0, per_key=True)
        try:
            await store.command("SET", "blacklist:" + tokens[0], "revoked")
            await store.command("SET", "session:blacklist:" + tokens[1], "revoked")
            revoked = []
            for token in tokens:
                try:
                    await revocations.check(Claims("u", "t", "customer", "", 9e9), token, True)
                    revoked.append(False)
                except TokenRevoked:
                    revoked.append(True)
            return revoked
        finally:
            await store.close()

    assert uvloop.run(story()) == [True, True, False]
