"""Service discovery and active health checks, seen from outside: which upstream answers.

With REDIS_URL set, instances registered in Redis take a service's traffic within the cache TTL;
when they leave (deregistered, expired) the static instances take it back; when Redis goes away
the gateway keeps routing to the instances it last knew. Health checks mark an instance that
fails its ``GET /health`` down, and up again once it passes.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gateway import GATEWAY_BINARY, Fleet, GatewayProcess, gateway_env, running_gateway
from support.redis import RedisServer
from support.registry import PREFIX, ServiceRegistration, wait_for
from support.upstream import RecordingUpstream, Reply

from api_gateway.config.settings import Instance
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.redis import RedisStore
from api_gateway.upstream.registry import Registry

SEARCH = "/api/v1/search/q"
FAST_REFRESH = {"discovery": {"cache_ttl_ms": 100}}
CLI_TIMEOUT_S = 20
HEALTH = {"interval_ms": 100, "timeout_ms": 500, "healthy_threshold": 2, "unhealthy_threshold": 2}


@pytest.fixture
def registration(redis_server: RedisServer) -> Iterator[ServiceRegistration]:
    registration = ServiceRegistration(redis_server.url)
    yield registration
    registration.close()


@pytest.fixture
def registered() -> Iterator[RecordingUpstream]:
    with RecordingUpstream("registered") as upstream:
        yield upstream


def served_by(gateway: GatewayProcess, count: int = 4) -> list[str | int]:
    """Which upstream answered each of ``count`` requests to the search service (or the
    status, when it was not a 200)."""
    names: list[str | int] = []
    for _ in range(count):
        response = gateway.get(SEARCH)
        names.append(response.json()["service"] if response.status == 200 else response.status)
    return names


def only(name: str) -> Any:
    return lambda names: set(names) == {name}


def env_for(redis: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": redis.url}


# --- the registry against Redis -----------------------------------------------------------------


def test_the_registry_registers_discovers_expires_and_deregisters(
    redis_server: RedisServer,
) -> None:
    async def story() -> list[list[Instance]]:
        registry = Registry(RedisStore(redis_server.url), "test:")
        seen = [await registry.discover("ticket")]
        await registry.register("ticket", "http://10.0.0.2:3004", 30)
        await registry.register("ticket", "http://10.0.0.1:3004", 0.2)
        await registry.register("ticket", "not a url", 30)
        seen.append(await registry.discover("ticket"))
        await asyncio.sleep(0.3)
        seen.append(await registry.discover("ticket"))
        await registry.deregister("ticket", "http://10.0.0.2:3004")
        await registry.deregister("ticket", "not a url")
        seen.append(await registry.discover("ticket"))
        await registry.close()
        return seen

    a, b = Instance("10.0.0.1", 3004), Instance("10.0.0.2", 3004)
    assert asyncio.run(story()) == [[], [a, b], [b], []]


def test_a_key_nobody_heartbeats_disappears_with_its_last_registration(
    redis_server: RedisServer, registration: ServiceRegistration
) -> None:
    key = registration.key("ticket")
    registration.register("ticket", "http://10.0.0.1:3004", ttl_ms=1500)
    registration.register("ticket", "http://10.0.0.2:3004", ttl_ms=1000)

    assert 1000 < registration.client.pttl(key) <= 1500
    assert wait_for(lambda: registration.client.exists(key), lambda n: n == 0) == 0


def test_the_registry_survives_redis_losing_its_scripts(
    redis_server: RedisServer, registration: ServiceRegistration
) -> None:
    async def story() -> list[Instance]:
        registry = Registry(RedisStore(redis_server.url), PREFIX)
        await registry.discover("ticket")  # the scripts are cached now...
        registration.client.script_flush()  # ...and gone, as after a Redis restart
        registration.register("ticket", "http://10.0.0.1:3004")
        try:
            return await registry.discover("ticket")
        finally:
            await registry.close()

    assert asyncio.run(story()) == [Instance("10.0.0.1", 3004)]


def test_the_registry_says_store_unavailable_when_redis_is_down(
    redis_server: RedisServer,
) -> None:
    redis_server.stop()

    async def story() -> None:
        registry = Registry(RedisStore(redis_server.url), "test:")
        try:
            await registry.discover("ticket")
        finally:
            await registry.close()

    with pytest.raises(StoreUnavailable):
        asyncio.run(story())


# --- a gateway following the registry -----------------------------------------------------------


def test_registered_instances_take_the_traffic_and_leave_it_to_static_config_when_gone(
    service_fleet: Fleet,
    tmp_path: Path,
    redis_server: RedisServer,
    registration: ServiceRegistration,
    registered: RecordingUpstream,
) -> None:
    urls = service_fleet.urls()
    with running_gateway(tmp_path, urls, FAST_REFRESH, env_for(redis_server)) as gateway:
        before = served_by(gateway)
        registration.register("search", registered.url)
        while_registered = wait_for(lambda: served_by(gateway), only("registered"))
        registration.deregister("search", registered.url)
        after_deregistering = wait_for(lambda: served_by(gateway), only("search"))
        registration.register("search", registered.url, ttl_ms=500)
        wait_for(lambda: served_by(gateway), only("registered"))
        after_expiry = wait_for(lambda: served_by(gateway), only("search"))

    assert before == ["search"] * 4
    assert while_registered == ["registered"] * 4
    assert after_deregistering == ["search"] * 4
    assert after_expiry == ["search"] * 4


def test_with_redis_down_the_last_known_instances_keep_the_traffic(
    service_fleet: Fleet,
    tmp_path: Path,
    redis_server: RedisServer,
    registration: ServiceRegistration,
    registered: RecordingUpstream,
) -> None:
    urls = service_fleet.urls()
    with running_gateway(tmp_path, urls, FAST_REFRESH, env_for(redis_server)) as gateway:
        registration.register("search", registered.url)
        wait_for(lambda: served_by(gateway), only("registered"))
        redis_server.stop()
        noticed = wait_for(gateway.output, lambda out: "registry unavailable" in out)
        during_outage = served_by(gateway, 6)
        redis_server.start()  # empty: nothing persisted, nobody registered yet
        after = wait_for(lambda: served_by(gateway), only("search"))
        recovered = wait_for(gateway.output, lambda out: "registry available again" in out)

    assert "registry unavailable" in noticed
    assert during_outage == ["registered"] * 6
    assert after == ["search"] * 4
    assert recovered.count("registry unavailable") == 1
    assert "registry available again" in recovered


def test_two_gateways_sharing_one_redis_route_to_the_same_registered_instance(
    service_fleet: Fleet,
    tmp_path: Path,
    redis_server: RedisServer,
    registration: ServiceRegistration,
    registered: RecordingUpstream,
) -> None:
    urls, env = service_fleet.urls(), env_for(redis_server)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_gateway(tmp_path / "a", urls, FAST_REFRESH, env) as first,
        running_gateway(tmp_path / "b", urls, FAST_REFRESH, env) as second,
    ):
        registration.register("search", registered.url)
        seen_by_first = wait_for(lambda: served_by(first), only("registered"))
        seen_by_second = wait_for(lambda: served_by(second), only("registered"))

    assert seen_by_first == seen_by_second == ["registered"] * 4
    assert len(registered.requests) >= 8


# --- active health checks -----------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[RecordingUpstream, RecordingUpstream]]:
    with RecordingUpstream("first") as first, RecordingUpstream("second") as second:
        yield first, second


def health_checked(
    tmp_path: Path, fleet: Fleet, pair: tuple[RecordingUpstream, RecordingUpstream]
) -> Any:
    urls = fleet.urls() | {"search": f"{pair[0].url},{pair[1].url}"}
    config = {"services": {"search": {"health_check": HEALTH}}}
    return running_gateway(tmp_path, urls, config)


def search_health(gateway: GatewayProcess) -> dict[str, bool]:
    instances = gateway.admin_get("/health").json()["services"]["search"]["instances"]
    return {state["instance"]: state["healthy"] for state in instances}


def test_health_checks_mark_an_instance_down_and_up_again(
    service_fleet: Fleet, tmp_path: Path, pair: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    first, second = pair
    second.respond(Reply(status=503), "/health")
    up, down = f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"
    with health_checked(tmp_path, service_fleet, pair) as gateway:
        marked_down = wait_for(lambda: search_health(gateway), lambda s: not s[down])
        second.respond(Reply(status=200), "/health")
        marked_up = wait_for(lambda: search_health(gateway), lambda s: s[down])
        logs = gateway.output()

    assert marked_down == {up: True, down: False}
    assert marked_up == {up: True, down: True}
    assert "marked down" in logs and "marked up" in logs
    probe = second.requests[0]
    assert (probe.method, probe.target) == ("GET", "/health")
    assert probe.header("x-gateway-internal") == "true"
    assert probe.header("user-agent") == "api-gateway-health"


def test_requests_avoid_an_instance_marked_down_and_return_once_it_is_up(
    service_fleet: Fleet, tmp_path: Path, pair: tuple[RecordingUpstream, RecordingUpstream]
) -> None:
    second = pair[1]
    second.respond(Reply(status=503), "/health")
    down = f"127.0.0.1:{second.port}"
    with health_checked(tmp_path, service_fleet, pair) as gateway:
        wait_for(lambda: search_health(gateway), lambda s: not s[down])
        while_down = served_by(gateway, 6)
        second.respond(Reply(status=200), "/health")
        wait_for(lambda: search_health(gateway), lambda s: s[down])
        once_up = served_by(gateway, 6)

    assert while_down == ["first"] * 6
    assert set(once_up) == {"first", "second"}


# --- the registry from the command line ---------------------------------------------------------


def registry_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY_BINARY, "registry", *args],
        env=gateway_env({}, env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_the_cli_registers_lists_and_deregisters_instances(redis_server: RedisServer) -> None:
    env = env_for(redis_server)
    url = "http://10.1.0.5:3004"
    registered = registry_cli("register", "--ttl", "30", "ticket", url, env=env)
    listed = registry_cli("list", "ticket", "search", env=env)
    deregistered = registry_cli("deregister", "ticket", url, env=env)
    after = registry_cli("list", env=env)

    assert (registered.returncode, deregistered.returncode) == (0, 0), registered.stderr
    assert listed.stdout.splitlines() == [f"ticket {url}"]
    assert (after.returncode, after.stdout) == (0, "")


def test_the_cli_refuses_a_bad_url_and_needs_redis(redis_server: RedisServer) -> None:
    bad_url = registry_cli("register", "ticket", "ticket-service:3004", env=env_for(redis_server))
    no_redis = registry_cli("list", env={})
    redis_server.stop()
    redis_down = registry_cli("list", env=env_for(redis_server))

    assert bad_url.returncode == 2 and "http://host:port" in bad_url.stderr
    assert no_redis.returncode == 1 and "REDIS_URL" in no_redis.stderr
    assert redis_down.returncode == 1 and "unavailable" in redis_down.stderr
