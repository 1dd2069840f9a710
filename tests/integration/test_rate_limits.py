"""Rate limits as a client sees them: both header families, the tightest limit reported, the
per-user limit, endpoint variants in one bucket, spoofed addresses, a route that fails closed
when Redis is away, and limits that tighten while the gateway is overloaded."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, datetime
from pathlib import Path

from support.assertions import assert_problem
from support.bodies import LOGIN_BODY, any_purchase
from support.gateway import Fleet, running_gateway
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Reply

PURCHASE = "/api/v1/tickets/purchase"


def purchase(gateway: object, token: str, path: str = PURCHASE) -> object:
    return gateway.request("POST", path, body=any_purchase(), token=token)  # type: ignore[attr-defined]


def test_answers_carry_both_header_families(service_fleet: Fleet, tmp_path: Path) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), env={"RATE_LIMIT_MAX": "2"}) as gateway:
        answers = [gateway.get("/api/v1/search/q") for _ in range(3)]

    first, second, refused = answers
    assert (first.header("ratelimit-limit"), first.header("x-ratelimit-limit")) == ("2", "2")
    assert (first.header("ratelimit-remaining"), second.header("ratelimit-remaining")) == ("1", "0")
    assert first.header("ratelimit-reset") == first.header("x-ratelimit-reset")
    assert 1 <= int(first.header("ratelimit-reset") or 0) <= 60
    document = assert_problem(refused, 429)
    assert refused.header("ratelimit-remaining") == "0"
    assert int(refused.header("retry-after") or 0) >= 1
    # The original gateway's member, from the refusing limit.
    quota = document["rateLimit"]
    assert isinstance(quota, dict)
    assert (quota["limit"], quota["remaining"]) == (2, 0)
    reset = datetime.fromisoformat(str(quota["reset"]).replace("Z", "+00:00"))
    assert 0 < (reset - datetime.now(UTC)).total_seconds() <= 61


def test_the_tightest_limit_is_the_one_reported(service_fleet: Fleet, tmp_path: Path) -> None:
    buyer = mint(sub="buyer-headers")
    with running_gateway(tmp_path, service_fleet.urls(), env={"RATE_LIMIT_MAX": "50"}) as gateway:
        bought = purchase(gateway, buyer)

    # Global 50/min (49 left), user 300/min, purchase 5/min (4 left), address 20/min, per event
    # 2/min (1 left): the per-event limit has the fewest requests left.
    assert bought.header_values("ratelimit-limit") == ["2"]  # type: ignore[attr-defined]
    assert bought.header_values("ratelimit-remaining") == ["1"]  # type: ignore[attr-defined]


def test_a_purchase_violation_blocks_for_five_minutes(service_fleet: Fleet, tmp_path: Path) -> None:
    buyer = mint(sub="buyer-blocked")
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        for _ in range(5):
            purchase(gateway, buyer)
        refused = purchase(gateway, buyer)
        still = gateway.request("POST", PURCHASE, body=any_purchase(), token=buyer)

    for response in (refused, still):
        assert_problem(response, 429)  # type: ignore[arg-type]
        assert 290 <= int(response.header("retry-after") or 0) <= 300  # type: ignore[attr-defined]


def test_variants_of_the_purchase_path_share_its_bucket(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    buyer = mint(sub="buyer-variants")
    variants = [
        PURCHASE,
        PURCHASE + "/",
        "/api/v1/tickets/Purchase",
        "/api/v1/tickets/purch%61se",
        "/api/v1//tickets/./purchase",
        PURCHASE + ";jsessionid=1",
    ]
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        answers = [purchase(gateway, buyer, path) for path in variants]

    assert [a.status for a in answers[:5]] == [200] * 5  # type: ignore[attr-defined]
    assert_problem(answers[5], 429)  # type: ignore[arg-type]


def test_authenticated_traffic_has_a_per_user_limit(service_fleet: Fleet, tmp_path: Path) -> None:
    fan, other = mint(sub="fan-1"), mint(sub="fan-2")
    env = {"RATE_LIMIT_USER_MAX": "3"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        mine = [gateway.get("/api/v1/events/1", token=fan).status for _ in range(4)]
        theirs = gateway.get("/api/v1/events/1", token=other).status
        anonymous = [gateway.get("/api/v1/search/q").status for _ in range(5)]

    assert mine == [200, 200, 200, 429]
    assert theirs == 200
    assert anonymous == [200] * 5


def test_a_spoofed_forwarded_for_does_not_buy_a_fresh_bucket(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), env={"RATE_LIMIT_MAX": "3"}) as gateway:
        statuses = [
            gateway.get(
                "/api/v1/search/q",
                headers=[("X-Forwarded-For", f"203.0.113.{n}"), ("X-Real-IP", f"198.51.100.{n}")],
            ).status
            for n in range(5)
        ]

    assert statuses == [200, 200, 200, 429, 429]


def test_a_fail_closed_route_answers_503_while_redis_is_away(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"REDIS_URL": f"{redis_server.url}/0"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        before = gateway.request("POST", "/api/v1/auth/login", body=LOGIN_BODY).status
        redis_server.stop()
        login = gateway.request("POST", "/api/v1/auth/login", body=LOGIN_BODY)
        browsing = gateway.get("/api/v1/search/q")

    assert before == 200
    assert_problem(login, 503)
    assert login.header("retry-after") == "1"
    assert browsing.status == 200  # other routes are decided from memory meanwhile


def test_limits_tighten_while_overloaded_and_recover(service_fleet: Fleet, tmp_path: Path) -> None:
    config = {
        "overload": {
            "in_flight_threshold": 8,
            "sample_interval_ms": 20,
            "recover_after_ms": 300,
            "tighten_factor": 0.5,
        }
    }
    service_fleet["event"].respond(Reply(delay_s=1.0, body=b"{}"), path="/api/v1/events/slow")
    env = {"RATE_LIMIT_MAX": "1000"}
    with (
        running_gateway(tmp_path, service_fleet.urls(), config, env=env) as gateway,
        concurrent.futures.ThreadPoolExecutor(20) as pool,
    ):
        calm = gateway.get("/api/v1/search/q").header("ratelimit-limit")
        slow = [pool.submit(gateway.get, "/api/v1/events/slow", token=mint()) for _ in range(20)]
        time.sleep(0.4)
        tight = gateway.get("/api/v1/search/q").header("ratelimit-limit")
        assert all(f.result().status == 200 for f in slow)
        deadline = time.monotonic() + 5
        relaxed = tight
        while relaxed != "1000" and time.monotonic() < deadline:
            time.sleep(0.1)
            relaxed = gateway.get("/api/v1/search/q").header("ratelimit-limit")

    assert (calm, tight, relaxed) == ("1000", "500", "1000")
    assert "overloaded" in gateway.stderr() or "overloaded" in gateway.output()
