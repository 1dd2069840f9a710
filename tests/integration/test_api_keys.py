"""API keys at the edge: keys made with the real CLI, checked by real gateways (embedded store,
two workers, and two gateways sharing one Redis), seen by a recording upstream."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawResponse
from support.gateway import (
    GATEWAY_BINARY,
    PATIENT_REDIS,
    Fleet,
    GatewayProcess,
    gateway_env,
    running_gateway,
)
from support.redis import RedisServer
from support.tokens import mint

PEPPER = "pepper-for-the-gateway-tests-0123456789ab"
KEY = re.compile(r"ttk_([0-9A-Za-z]{12})_[0-9A-Za-z]{43}")
CLI_TIMEOUT_S = 30
RECHECK_S = 5.0
SLACK_S = 2.0  # a busy two-core machine: requests and the CLI themselves take time
POLL_S = 0.1
TARGET = "/api/v1/integrations/orders"
USED_KEYS: list[str] = []  # every key this module sent: none may appear in a gateway's output


class Cli:
    def __init__(self, directory: Path, env: dict[str, str] | None = None) -> None:
        self.config = directory / "cli.yaml"
        self.config.write_text(yaml.safe_dump({"api_keys": {"path": str(directory / "k.db")}}))
        self.env = gateway_env({}, {"API_KEY_PEPPER": PEPPER, **(env or {})})
        self.directory = directory

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [GATEWAY_BINARY, "apikey", *args, "--config", str(self.config)],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create(self, *args: str, tenant: str = "tenant-7") -> tuple[str, str]:
        out = self.run("create", "--tenant", tenant, "--name", "partner", *args).strip()
        match = KEY.fullmatch(out)
        assert match is not None, out
        USED_KEYS.append(out)
        return out, match.group(1)


def with_key(gateway: GatewayProcess, key: str, target: str = TARGET) -> RawResponse:
    return gateway.get(target, headers={"X-API-Key": key})


def refused_within(check: Callable[[], bool], seconds: float) -> float:
    """Poll ``check`` until it is true; how long that took (fails after ``seconds``)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(POLL_S)
    raise AssertionError(f"still accepted after {seconds} s")


@pytest.fixture(scope="module")
def gateway_config(module_dir: Path) -> dict[str, Any]:
    return {"api_keys": {"path": str(module_dir / "k.db")}}


@pytest.fixture(scope="module")
def gateway_extra_env() -> dict[str, str]:
    return {"API_KEY_PEPPER": PEPPER}


@pytest.fixture(scope="module")
def cli(module_dir: Path) -> Cli:
    return Cli(module_dir)


def test_both_ways_of_sending_a_key_reach_the_service_as_the_keys_tenant(
    gateway: GatewayProcess, services: Fleet, cli: Cli
) -> None:
    key, key_id = cli.create()
    spoofed = {"x-api-key-id": "someone-else", "x-auth-method": "jwt", "x-tenant-id": "other"}
    for credentials in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        services.reset()
        response = gateway.get(TARGET, headers={**credentials, **spoofed})
        assert response.status == 200, response.body
        seen = services["integration"].only_request()
        assert seen.header_values("x-tenant-id") == ["tenant-7"]
        assert seen.header_values("x-api-key-id") == [key_id]
        assert seen.header_values("x-auth-method") == ["api_key"]
        assert "x-api-key" not in seen.header_names()
        assert "authorization" not in seen.header_names()
        assert key.encode() not in seen.raw_head


def test_a_key_on_a_route_that_takes_only_tokens_is_refused(
    gateway: GatewayProcess, services: Fleet, cli: Cli
) -> None:
    key, _ = cli.create()
    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        assert_problem(gateway.get("/api/v1/tickets/1", headers=headers), 401)
    assert_nothing_reached(services)
    token = mint()
    assert gateway.get("/api/v1/integrations/x", token=token).status == 200  # tokens still work


def test_a_key_restricted_to_routes_is_refused_on_the_others(
    gateway: GatewayProcess, services: Fleet, cli: Cli
) -> None:
    key, _ = cli.create("--routes", "/integrations")
    assert with_key(gateway, key).status == 200
    services.reset()
    document = assert_problem(with_key(gateway, key, "/api/v1/search/events?q=x"), 403)
    assert "not allowed on this route" in str(document["detail"])
    assert_nothing_reached(services)


@pytest.mark.parametrize(
    "sent",
    [
        "ttk_short",
        "sk_live_" + "a" * 52,
        "ttk_" + "a" * 12 + "_" + "b" * 42 + "!",
        "ttk_" + "a" * 12 + "_" + "b" * 43,  # the right shape, but no such key
    ],
)
def test_a_key_of_the_wrong_shape_or_unknown_gets_a_401_problem(
    gateway: GatewayProcess, services: Fleet, sent: str
) -> None:
    USED_KEYS.append(sent)
    document = assert_problem(with_key(gateway, sent), 401)
    assert sent not in str(document)
    assert_nothing_reached(services)


def test_a_revoked_key_is_refused_within_the_recheck(gateway: GatewayProcess, cli: Cli) -> None:
    key, key_id = cli.create()
    assert with_key(gateway, key).status == 200
    cli.run("revoke", key_id)
    refused_within(lambda: with_key(gateway, key).status == 401, RECHECK_S + SLACK_S)
    assert "revoked" in with_key(gateway, key).json()["detail"]


def test_an_expired_key_is_refused(gateway: GatewayProcess, cli: Cli) -> None:
    key, _ = cli.create("--expires", "2s")
    refused_within(lambda: with_key(gateway, key).status == 401, 2 + SLACK_S)
    assert with_key(gateway, key).json()["detail"] == "the API key has expired"


def test_after_a_rotation_both_keys_work_for_the_grace_period(
    gateway: GatewayProcess, cli: Cli
) -> None:
    old, key_id = cli.create()
    assert with_key(gateway, old).status == 200
    new = cli.run("rotate", key_id, "--grace", "1h").strip()
    USED_KEYS.append(new)
    refused_within(lambda: with_key(gateway, new).status == 200, RECHECK_S + SLACK_S)
    assert with_key(gateway, old).status == 200
    cli.run("rotate", key_id, "--grace", "0s")  # the grace of `new` is over at once
    refused_within(lambda: with_key(gateway, new).status == 401, RECHECK_S + SLACK_S)


def test_a_key_has_its_own_rate_limit(gateway: GatewayProcess, cli: Cli) -> None:
    key, _ = cli.create("--rate-limit", "3/60s")
    other, _ = cli.create("--rate-limit", "3/60s")
    for remaining in (2, 1, 0):
        response = with_key(gateway, key)
        assert response.status == 200
        assert response.header("ratelimit-remaining") == str(remaining)
    assert_problem(with_key(gateway, key), 429)
    assert with_key(gateway, other).status == 200  # counted by key, not by client address


def test_last_use_reaches_the_list(gateway: GatewayProcess, cli: Cli) -> None:
    key, key_id = cli.create()
    assert with_key(gateway, key).status == 200

    def listed_as_used() -> bool:
        row = next(line for line in cli.run("list").splitlines() if line.startswith(key_id))
        return "never" not in row.split()[-2]

    refused_within(listed_as_used, 5.0)


def test_no_key_appears_in_the_gateways_output(gateway: GatewayProcess) -> None:
    assert USED_KEYS
    output = gateway.output()
    for key in USED_KEYS:
        assert key not in output
        assert key[-20:] not in output


def test_two_workers_share_the_embedded_store(service_fleet: Fleet, tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    key, key_id = cli.create()
    config = {"api_keys": {"path": str(tmp_path / "k.db")}}
    env = {"API_KEY_PEPPER": PEPPER}
    with running_gateway(
        tmp_path, service_fleet.urls(), config, env, ["--workers", "2"]
    ) as gateway:
        for _ in range(20):  # fresh connections: both workers answer some
            assert with_key(gateway, key).status == 200
        revoked_at = time.monotonic()
        cli.run("revoke", key_id)
        refused_within(lambda: with_key(gateway, key).status == 401, RECHECK_S + SLACK_S)
        # One worker refusing says nothing of the other, whose copy may be younger: the bound
        # is per worker, so every answer is a refusal only once it has passed for both.
        time.sleep(max(0.0, revoked_at + RECHECK_S + SLACK_S - time.monotonic()))
        for _ in range(20):
            assert with_key(gateway, key).status == 401
        assert key not in gateway.output()


@pytest.fixture
def redis_gateways(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> Iterator[tuple[Cli, GatewayProcess, GatewayProcess]]:
    env = {"API_KEY_PEPPER": PEPPER, "REDIS_URL": redis_server.url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    urls = service_fleet.urls()
    with (
        running_gateway(tmp_path / "a", urls, PATIENT_REDIS, env) as first,
        running_gateway(tmp_path / "b", urls, PATIENT_REDIS, env) as second,
    ):
        yield Cli(tmp_path, {"REDIS_URL": redis_server.url}), first, second


def test_a_revocation_reaches_every_gateway_sharing_redis(
    redis_gateways: tuple[Cli, GatewayProcess, GatewayProcess],
) -> None:
    cli, first, second = redis_gateways
    key, key_id = cli.create()
    assert with_key(first, key).status == 200 and with_key(second, key).status == 200
    cli.run("revoke", key_id)
    revoked = time.monotonic()
    for gateway in (first, second):
        refused_within(lambda g=gateway: with_key(g, key).status == 401, RECHECK_S + SLACK_S)  # type: ignore[misc]
    assert time.monotonic() - revoked <= RECHECK_S + SLACK_S
    assert key not in first.output() + second.output()


def test_a_keys_limit_holds_across_gateways_and_a_store_outage_is_503(
    redis_gateways: tuple[Cli, GatewayProcess, GatewayProcess], redis_server: RedisServer
) -> None:
    cli, first, second = redis_gateways
    key, _ = cli.create("--rate-limit", "3/60s")
    assert [with_key(g, key).status for g in (first, second, first)] == [200, 200, 200]
    assert_problem(with_key(second, key), 429)
    unseen, _ = cli.create()
    redis_server.stop()
    assert_problem(with_key(first, unseen), 503)
