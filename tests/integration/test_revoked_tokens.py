"""Revoked access tokens: a token auth-service logged out (its ``blacklist:<token>`` key, or the
original gateway's ``session:blacklist:<token>``, in the platform's Redis) is refused with a 401
within ``jwt.revocation_check_ms``; Redis is asked at most once per token per period; while
Redis is away, a fail-open route lets tokens through and a fail-closed one answers 503."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer
from support.tokens import mint

PERIOD_MS = 500
TARGET = "/api/v1/tickets/1"
# The check period, and the time a request takes on a loaded test machine.
REFUSED_WITHIN_S = PERIOD_MS / 1000 + 1.5
POLL_S = 0.02
# auth-service's logout keeps the key for the rest of the token's life.
REVOKED_FOR_S = "3600"


def redis_cli(server: RedisServer, *args: str) -> str:
    command = ["redis-cli", "-p", str(server.port), *args]
    return subprocess.run(command, capture_output=True, check=True, text=True, timeout=5).stdout


def revoke(server: RedisServer, token: str, prefix: str = "blacklist:") -> None:
    """As auth-service's logout writes it: SETEX blacklist:<token> <ttl> revoked."""
    assert redis_cli(server, "SETEX", prefix + token, REVOKED_FOR_S, "revoked").strip() == "OK"


class Monitor:
    """Every command the private Redis receives (MONITOR), read once stopped."""

    def __init__(self, server: RedisServer) -> None:
        command = ["redis-cli", "-p", str(server.port), "MONITOR"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "OK"  # watching from here on

    def stop(self) -> list[str]:
        time.sleep(0.2)  # the last commands' lines reach the monitor
        self.process.terminate()
        return self.process.communicate(timeout=5)[0].splitlines()


def revocation_questions(lines: list[str], token: str) -> int:
    """The questions about the token's revocation keys that a client (not a script) sent: one
    EXISTS of both keys each."""
    asked = f'"EXISTS" "blacklist:{token}" "session:blacklist:{token}"'
    return sum(1 for line in lines if "[0 lua]" not in line and asked in line)


def env_for(server: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": f"{server.url}/0"}


def config(period_ms: int = PERIOD_MS) -> dict[str, Any]:
    return {"jwt": {"revocation_check_ms": period_ms}}


def refused_after(gateway: GatewayProcess, token: str) -> tuple[RawResponse, float]:
    started = time.monotonic()
    while True:
        response = gateway.get(TARGET, token=token)
        elapsed = time.monotonic() - started
        if response.status != 200 or elapsed > 2 * REFUSED_WITHIN_S:
            return response, elapsed
        time.sleep(POLL_S)


@pytest.mark.parametrize("prefix", ["blacklist:", "session:blacklist:"])
def test_a_revoked_token_is_refused_within_the_period_and_others_are_not(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    revoked, other = mint(sub="leaving-user"), mint(sub="staying-user")
    with running_gateway(tmp_path, service_fleet.urls(), config(), env_for(redis_server)) as gw:
        assert gw.get(TARGET, token=revoked).status == 200  # verified, and known good
        revoke(redis_server, revoked, prefix)
        refused, elapsed = refused_after(gw, revoked)
        again = gw.get(TARGET, token=revoked)
        unaffected = gw.get(TARGET, token=other)

    document = assert_problem(refused, 401)
    assert elapsed <= REFUSED_WITHIN_S, elapsed
    assert str(document["type"]).endswith("/token-revoked"), document
    assert document["error"] == "Token revoked"
    assert "invalid_token" in (refused.header("www-authenticate") or "")
    assert again.status == 401
    assert unaffected.status == 200


def test_a_token_revoked_before_its_first_use_is_refused_at_once(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    token = mint(sub="logged-out-before")
    revoke(redis_server, token)
    service_fleet.reset()
    with running_gateway(tmp_path, service_fleet.urls(), config(), env_for(redis_server)) as gw:
        response = gw.get(TARGET, token=token)

    assert_problem(response, 401)
    assert not service_fleet["ticket"].requests


def test_redis_is_asked_at_most_once_per_token_per_period(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    tokens = [mint(sub=f"busy-{n}") for n in range(2)]
    period_ms = 2000
    env = env_for(redis_server)
    with running_gateway(tmp_path, service_fleet.urls(), config(period_ms), env) as gateway:
        monitor = Monitor(redis_server)
        started = time.monotonic()
        statuses = [gateway.get(TARGET, token=tokens[n % 2]).status for n in range(60)]
        periods = int((time.monotonic() - started) * 1000 // period_ms) + 1
        lines = monitor.stop()

    assert statuses == [200] * 60
    for token in tokens:
        # Both keys in one question; one question per period begun.
        assert 1 <= revocation_questions(lines, token) <= periods, (lines[:20], periods)


def test_redis_away_lets_a_fail_open_route_through_and_closes_a_fail_closed_one(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    token = mint(sub="during-outage")
    with running_gateway(tmp_path, service_fleet.urls(), config(), env_for(redis_server)) as gw:
        assert gw.get(TARGET, token=token).status == 200
        redis_server.stop()
        time.sleep(PERIOD_MS / 1000 + 0.1)  # the token's last answer is now too old
        browsing = gw.get(TARGET, token=token)
        closed = gw.request("GET", "/api/v1/auth/me", token=token)
        output = gw.output()

    assert browsing.status == 200  # fail open: let through, and said so
    assert "revoked tokens cannot be checked" in output
    assert_problem(closed, 503)


CARD = {
    "path": "/event-cards/{eventId}",
    "auth": "optional",
    "sources": {
        "event": {"service": "event", "path": "/api/v1/events/{eventId}", "required": True}
    },
}


@pytest.mark.parametrize(
    "target", ["/api/v1/aggregate/events/e1", "/api/v1/aggregate/event-cards/e1"]
)
def test_aggregates_refuse_a_revoked_token_whether_auth_is_required_or_optional(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer, target: str
) -> None:
    token = mint(sub="aggregate-user")
    settings = config() | {"aggregates": {"event-card": CARD}}
    with running_gateway(tmp_path, service_fleet.urls(), settings, env_for(redis_server)) as gw:
        # Authenticated (what the stub services answer decides the rest of the status).
        assert gw.get(target, token=token).status not in (401, 503)
        revoke(redis_server, token)
        time.sleep(PERIOD_MS / 1000 + 0.1)  # the token's last answer is now too old
        refused = gw.get(target, token=token)
        anonymous = gw.get("/api/v1/aggregate/event-cards/e1")

    document = assert_problem(refused, 401)
    assert str(document["type"]).endswith("/token-revoked")
    assert anonymous.status not in (401, 503)


def test_without_redis_nothing_is_checked(gateway: GatewayProcess, services: Fleet) -> None:
    assert gateway.get(TARGET, token=mint(sub="no-redis")).status == 200
