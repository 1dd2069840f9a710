"""The response cache, told as a client and the services see it, once with the cache in the
gateway's memory and once in Redis: what is stored and what never is, tenants kept apart, one
upstream request for many concurrent misses, and writes that make cached reads stale."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Behaviour, Reply

SHARED_MINUTE = (("Cache-Control", "s-maxage=60"),)
PUBLIC_MINUTE = (("Cache-Control", "max-age=60"),)
CONCURRENT = 200
_ids = itertools.count(1)


def fresh_id() -> int:
    """Every test reads paths of its own: the module's gateway keeps its cache between tests."""
    return next(_ids)


@pytest.fixture(scope="module", params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "memory":
        yield None
        return
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def gateway_extra_env(backend: str | None) -> dict[str, str]:
    return {} if backend is None else {"REDIS_URL": backend}


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "routes": {
            "/marketplace": {"cache": {"ttl_ms": 60_000, "max_body_bytes": 1000}},
            "/tickets": {"cache": {"per_user": True}},
        }
    }


def token(tenant: str = "tenant-a", user: str = "user-1") -> str:
    return mint(sub=user, tenant_id=tenant)


def get(gateway: GatewayProcess, target: str, **kwargs: Any) -> RawResponse:
    return gateway.get(target, **kwargs)


def test_a_second_read_is_a_hit_and_head_is_served_from_it(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(headers=PUBLIC_MINUTE))
    target = f"/api/v1/search/events?q=rock&id={fresh_id()}"

    first, second = get(gateway, target), get(gateway, target)
    head = gateway.request("HEAD", target)

    assert (first.status, first.header("x-cache")) == (200, "MISS")
    assert (second.status, second.header("x-cache")) == (200, "HIT")
    assert second.body == first.body
    assert second.header("age") is not None and int(second.header("age") or "") <= 1
    assert second.header("content-type") == "application/json"
    assert (head.status, head.header("x-cache"), head.body) == (200, "HIT", b"")
    assert head.header("content-length") == str(len(first.body))
    assert len(services["search"].requests) == 1


def test_the_query_order_does_not_matter(gateway: GatewayProcess, services: Fleet) -> None:
    services["search"].respond(Reply(headers=PUBLIC_MINUTE))
    n = fresh_id()

    first = get(gateway, f"/api/v1/search/q?a=1&b=2&n={n}")
    second = get(gateway, f"/api/v1/search/q?n={n}&b=2&a=1")

    assert (first.header("x-cache"), second.header("x-cache")) == ("MISS", "HIT")
    assert len(services["search"].requests) == 1


def test_tenants_never_see_each_others_answers(gateway: GatewayProcess, services: Fleet) -> None:
    services["event"].respond(Reply(headers=SHARED_MINUTE))
    target = f"/api/v1/events/{fresh_id()}"

    a_first = get(gateway, target, token=token("tenant-a", "alice"))
    a_colleague = get(gateway, target, token=token("tenant-a", "bob"))
    b_first = get(gateway, target, token=token("tenant-b", "carol"))
    b_again = get(gateway, target, token=token("tenant-b", "carol"))
    anonymous = get(gateway, target)

    assert [r.header("x-cache") for r in (a_first, a_colleague, b_first, b_again)] == [
        "MISS", "HIT", "MISS", "HIT",
    ]  # fmt: skip
    assert a_colleague.body == a_first.body
    assert b_first.body != a_first.body and b_again.body == b_first.body
    assert anonymous.status == 401
    seen = [r.header("x-tenant-id") for r in services["event"].requests]
    assert seen == ["tenant-a", "tenant-b"]


def test_a_per_user_route_keeps_users_apart(gateway: GatewayProcess, services: Fleet) -> None:
    services["ticket"].respond(Reply(headers=PUBLIC_MINUTE))
    target = f"/api/v1/tickets/mine-{fresh_id()}"

    alice = [get(gateway, target, token=token(user="alice")) for _ in range(2)]
    bob = get(gateway, target, token=token(user="bob"))

    assert [r.header("x-cache") for r in [*alice, bob]] == ["MISS", "HIT", "MISS"]
    assert [r.header("x-user-id") for r in services["ticket"].requests] == ["alice", "bob"]


@pytest.mark.parametrize(
    "headers",
    [
        (("Cache-Control", "max-age=60"), ("Set-Cookie", "session=abc; HttpOnly")),
        (("Cache-Control", "private, max-age=60"),),
        (("Cache-Control", "no-store"),),
        (("Cache-Control", "no-cache, max-age=60"),),
        (("Cache-Control", "max-age=60"), ("Vary", "*")),
        (),
    ],
    ids=["set-cookie", "private", "no-store", "no-cache", "vary-star", "no-lifetime"],
)
def test_what_the_service_does_not_allow_is_never_stored(
    gateway: GatewayProcess, services: Fleet, headers: tuple[tuple[str, str], ...]
) -> None:
    services["search"].respond(Reply(headers=headers))
    target = f"/api/v1/search/none-{fresh_id()}"

    answers = [get(gateway, target) for _ in range(2)]

    assert [r.header("x-cache") for r in answers] == ["MISS", "MISS"]
    assert answers[0].body != answers[1].body
    assert len(services["search"].requests) == 2
    if headers and headers[-1][0] == "Set-Cookie":
        assert answers[1].header("set-cookie") == "session=abc; HttpOnly"


def test_errors_and_private_answers_to_credentials_are_not_stored(
    gateway: GatewayProcess, services: Fleet
) -> None:
    n = fresh_id()
    services["search"].respond(Reply(status=404, headers=PUBLIC_MINUTE))
    # max-age alone does not let a shared cache keep an answer to a request with credentials.
    services["event"].respond(Reply(headers=PUBLIC_MINUTE))

    missing = [get(gateway, f"/api/v1/search/gone-{n}").status for _ in range(2)]
    events = [get(gateway, f"/api/v1/events/p{n}", token=token()) for _ in range(2)]

    assert missing == [404, 404]
    assert [r.header("x-cache") for r in events] == ["MISS", "MISS"]
    assert len(services["search"].requests) == len(services["event"].requests) == 2


def test_vary_keeps_variants_apart(gateway: GatewayProcess, services: Fleet) -> None:
    services["search"].respond(Reply(headers=(*PUBLIC_MINUTE, ("Vary", "Accept-Language"))))
    target = f"/api/v1/search/v-{fresh_id()}"

    english = get(gateway, target, headers={"Accept-Language": "en"})
    french = get(gateway, target, headers={"Accept-Language": "fr"})
    english_again = get(gateway, target, headers={"Accept-Language": "en"})
    french_again = get(gateway, target, headers={"Accept-Language": "fr"})

    assert [r.header("x-cache") for r in (english, french, english_again, french_again)] == [
        "MISS", "MISS", "HIT", "HIT",
    ]  # fmt: skip
    assert english_again.body == english.body and french_again.body == french.body


def test_a_routes_default_ttl_and_size_cap(gateway: GatewayProcess, services: Fleet) -> None:
    n = fresh_id()
    services["marketplace"].respond(Reply(body=b"x" * 1000), path=f"/api/v1/marketplace/s{n}")
    services["marketplace"].respond(
        Reply(generated_size=5000, chunked=True), path=f"/api/v1/marketplace/l{n}"
    )

    auth = token()
    small = [get(gateway, f"/api/v1/marketplace/s{n}", token=auth) for _ in range(2)]
    large = [get(gateway, f"/api/v1/marketplace/l{n}", token=auth) for _ in range(2)]

    assert [r.header("x-cache") for r in small] == ["MISS", "HIT"]
    assert [r.header("x-cache") for r in large] == ["MISS", "MISS"]
    assert [len(r.body) for r in large] == [5000, 5000]
    assert len(services["marketplace"].requests) == 3


def test_a_large_streamed_body_under_the_cap_is_stored_whole(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(40_000))  # ~400 KB: it streams
    services["search"].respond(Reply(headers=PUBLIC_MINUTE, body=body))
    target = f"/api/v1/search/big-{fresh_id()}"

    answers = [get(gateway, target) for _ in range(2)]

    assert [r.header("x-cache") for r in answers] == ["MISS", "HIT"]
    assert answers[0].body == answers[1].body == body
    assert answers[1].header("content-length") == str(len(body))


def test_a_body_cut_short_is_never_stored(gateway: GatewayProcess, services: Fleet) -> None:
    target = f"/api/v1/search/cut-{fresh_id()}"
    services["search"].respond(
        Reply(headers=PUBLIC_MINUTE, body=b"y" * 100_000, behaviour=Behaviour.TRUNCATED_BODY)
    )

    cut = get(gateway, target)
    tries = len(services["search"].requests)
    services["search"].respond(Reply(headers=PUBLIC_MINUTE))
    whole = get(gateway, target)

    # The body streams (it is large): the gateway read half of it, then the service hung up.
    assert cut.status == 502 and tries == 1
    assert (whole.status, whole.header("x-cache")) == (200, "MISS")
    assert len(services["search"].requests) == 2


def test_concurrent_misses_make_one_upstream_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(headers=PUBLIC_MINUTE, delay_s=1.0))
    target = f"/api/v1/search/popular-{fresh_id()}"

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(lambda _: get(gateway, target), range(CONCURRENT)))

    assert [r.status for r in answers] == [200] * CONCURRENT
    assert len({r.body for r in answers}) == 1
    assert sorted(r.header("x-cache") or "" for r in answers).count("MISS") == 1
    assert len(services["search"].requests) == 1


def test_a_write_invalidates_the_resource_and_its_collection(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["event"].respond(Reply(headers=SHARED_MINUTE))
    n = fresh_id()
    item, tickets = f"/api/v1/events/{n}", f"/api/v1/events/{n}/tickets"
    reads = [item, tickets, f"/api/v1/events/x{n}", f"/api/v1/events?page={n}"]
    auth = token()

    warmed = [get(gateway, target, token=auth).header("x-cache") for target in reads]
    cached = [get(gateway, target, token=auth).header("x-cache") for target in reads]
    services["event"].respond(Reply(status=409), path=item)
    refused = gateway.request("PUT", item, body=b"{}", token=auth)
    still = get(gateway, item, token=auth).header("x-cache")
    services["event"].respond(Reply(body=b"{}"), path=item)
    written = gateway.request("PUT", item, body=b"{}", token=auth)
    after = [get(gateway, target, token=auth).header("x-cache") for target in reads]

    assert warmed == ["MISS"] * 4 and cached == ["HIT"] * 4
    assert (refused.status, still) == (409, "HIT")  # a failed write changes nothing
    assert written.status == 200
    # The item and everything below it, and the collection; another item keeps its entry.
    assert after == ["MISS", "MISS", "HIT", "MISS"]


def test_a_write_through_an_alias_invalidates_what_its_route_cached(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["event"].respond(Reply(headers=SHARED_MINUTE))
    n = fresh_id()
    route, alias = f"/api/v1/events/{n}", f"/api/v1/event/{n}"
    auth = token()

    warmed = [get(gateway, target, token=auth).header("x-cache") for target in (route, alias)]
    cached = [get(gateway, target, token=auth).header("x-cache") for target in (route, alias)]
    written = gateway.request("PUT", alias, body=b"{}", token=auth)
    after_alias_write = [get(gateway, t, token=auth).header("x-cache") for t in (route, alias)]
    written_again = gateway.request("PUT", route, body=b"{}", token=auth)
    after_route_write = [get(gateway, t, token=auth).header("x-cache") for t in (route, alias)]

    assert warmed == ["MISS", "MISS"] and cached == ["HIT", "HIT"]
    assert (written.status, written_again.status) == (200, 200)
    assert after_alias_write == ["MISS", "MISS"]
    assert after_route_write == ["MISS", "MISS"]
