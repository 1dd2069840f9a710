"""Instance choice: each strategy's distribution, health-aware filtering, panic mode, and the
consistent-hash remapping bound."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from support.resilience import request

from api_gateway.config.settings import BalancerConfig, Instance
from api_gateway.types import Claims, Request
from api_gateway.upstream.balancer import Balancer, build_balancer, cookie, hash_key
from api_gateway.upstream.instances import ServiceInstances, UpstreamInstance

NOW = 1_000_000.0


def instances(count: int) -> list[Instance]:
    return [Instance(f"10.0.0.{n + 1}", 8000) for n in range(count)]


def balancer(strategy: str, count: int = 3, key: str = "user", seed: int = 1) -> Balancer:
    service = ServiceInstances("ticket", instances(count))
    return build_balancer(BalancerConfig(strategy, key), service, random.Random(seed).randrange)


def picks(b: Balancer, n: int, make: object = request) -> Counter[str]:
    return Counter(b.pick(make(), NOW, ()).authority for _ in range(n))  # type: ignore[operator]


def as_user(user_id: str) -> Request:
    r = request()
    r.claims = Claims(user_id, "tenant-1", "user", "", NOW)
    return r


def test_round_robin_spreads_evenly() -> None:
    assert sorted(picks(balancer("round_robin"), 300).values()) == [100, 100, 100]


def test_random_spreads_roughly_evenly() -> None:
    counts = picks(balancer("random"), 3000)
    assert len(counts) == 3
    assert all(850 < c < 1150 for c in counts.values())


def test_least_connections_prefers_the_least_busy() -> None:
    b = balancer("least_connections")
    busy = b.service.endpoints
    busy[0].in_flight, busy[1].in_flight, busy[2].in_flight = 5, 0, 3
    assert picks(b, 10) == Counter({busy[1].authority: 10})


def test_least_connections_takes_turns_between_equals() -> None:
    assert sorted(picks(balancer("least_connections"), 30).values()) == [10, 10, 10]


def test_consistent_hash_sends_a_user_to_one_instance() -> None:
    b = balancer("consistent_hash")
    for user in ("u-1", "u-2", "u-3"):
        assert len(picks(b, 20, lambda user=user: as_user(user))) == 1


def test_consistent_hash_spreads_users() -> None:
    b = balancer("consistent_hash", count=4)
    counts = Counter(b.pick(as_user(f"user-{n}"), NOW, ()).authority for n in range(4000))
    assert all(700 < c < 1300 for c in counts.values())


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 10), st.data())
def test_removing_one_of_n_instances_remaps_about_one_nth_of_keys(
    count: int, data: st.DataObject
) -> None:
    service = ServiceInstances("ticket", instances(count))
    b = build_balancer(BalancerConfig("consistent_hash"), service, random.Random(1).randrange)
    users = [as_user(f"user-{n}") for n in range(2000)]
    before = [b.pick(u, NOW, ()).authority for u in users]
    gone = data.draw(st.integers(0, count - 1))
    service.update([i for n, i in enumerate(instances(count)) if n != gone])
    after = [b.pick(u, NOW, ()).authority for u in users]
    moved = [(x, y) for x, y in zip(before, after, strict=True) if x != y]
    # Only the removed instance's keys move, and they are about 1/N of all keys.
    assert all(x == instances(count)[gone].authority for x, _ in moved)
    assert len(moved) < 2000 * 1.6 / count


def test_hash_keys_from_header_cookie_or_client_ip() -> None:
    with_header = request(headers=[(b"x-session", b"s-9")])
    with_cookie = request(headers=[(b"cookie", b"a=1; sid=abc")])
    assert hash_key("header:X-Session")(with_header) == "s-9"
    assert hash_key("header:x-session")(request()) == "192.0.2.1"
    assert hash_key("cookie:sid")(with_cookie) == "abc"
    assert hash_key("cookie:sid")(request()) == "192.0.2.1"
    assert hash_key("user")(as_user("u-7")) == "u-7"
    assert hash_key("user")(request()) == "192.0.2.1"
    assert cookie(request(headers=[(b"cookie", b"x=1"), (b"cookie", b"sid=z")]), "sid") == "z"


def test_a_header_hash_key_over_several_lines_is_all_of_them_joined() -> None:
    key = hash_key("header:X-Session")
    two_lines = request(headers=[(b"x-session", b"s-9"), (b"x-session", b"s-1")])
    one_line = request(headers=[(b"x-session", b"s-9, s-1")])

    assert key(two_lines) == key(one_line) == "s-9, s-1"
    assert key(request(headers=[(b"x-session", b"s-1"), (b"x-session", b"s-9")])) != key(two_lines)


def test_unavailable_instances_are_skipped() -> None:
    b = balancer("round_robin")
    down, ejected, up = b.service.endpoints
    down.healthy = False
    ejected.ejected_until = NOW + 1
    assert picks(b, 12) == Counter({up.authority: 12})
    assert not b.panicking


def test_with_none_available_all_are_tried_in_panic_mode() -> None:
    b = balancer("round_robin")
    for endpoint in b.service.endpoints:
        endpoint.healthy = False
    assert len(picks(b, 12)) == 3
    assert b.panicking


def test_a_single_unhealthy_instance_is_still_tried_and_reported() -> None:
    b = balancer("round_robin", count=1)
    b.service.endpoints[0].healthy = False
    assert b.pick(request(), NOW, ()) is b.service.endpoints[0]
    assert b.panicking


def test_a_retry_avoids_instances_already_tried() -> None:
    for strategy in ("round_robin", "least_connections", "random", "consistent_hash"):
        b = balancer(strategy)
        first = b.pick(as_user("u-1"), NOW, ())
        for _ in range(10):
            assert b.pick(as_user("u-1"), NOW, (first,)) is not first


def test_when_every_instance_was_tried_a_retry_may_reuse_one() -> None:
    b = balancer("round_robin", count=2)
    tried: tuple[UpstreamInstance, ...] = b.service.endpoints
    assert b.pick(request(), NOW, tried) in tried


def test_an_instance_set_update_keeps_known_instances_state() -> None:
    service = ServiceInstances("ticket", instances(2))
    service.endpoints[0].in_flight = 4
    assert service.update(instances(3))
    assert service.endpoints[0].in_flight == 4
    assert not service.update(instances(3))
    assert not service.update([])  # an empty set is never taken
    assert len(service.endpoints) == 3
