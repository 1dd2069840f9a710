"""Rate-limit keys compiled from a spec: each kind's value, parts a request lacks, values that
cannot collide or grow, and the 429 that reports only the limit that refused."""

from __future__ import annotations

import pytest
from support.resilience import run

from api_gateway.config.limits import parse_part
from api_gateway.errors import RateLimited
from api_gateway.limit_keys import MAX_VALUE_CHARS, bounded, compile_key
from api_gateway.limiter import Rate
from api_gateway.network import AddressKeys
from api_gateway.policies.ratelimit import KEY_CACHE_SIZE, RateLimit, by_client_ip, by_identity
from api_gateway.stores.memory import MemoryStore
from api_gateway.types import Claims, Request, Response

PREFIX = "/api/v1/events"
TEMPLATE = ["", "{eventId}", "hold"]


def request(
    path: str = PREFIX + "/e-1/hold",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    client_ip: str = "192.0.2.1",
    claims: Claims | None = None,
) -> Request:
    r = Request("POST", path.encode(), headers or [], body, client_ip)
    r.path, r.claims = path, claims
    return r


def fan(user: str = "fan-1", tenant: str = "tenant-1", key_id: str = "") -> Claims:
    return Claims(user, tenant, "user", "", 0.0, key_id)


def key_of(parts: list[str], r: Request) -> str | None:
    return compile_key(parts, AddressKeys(64), len(PREFIX), TEMPLATE)(r)


def test_each_kind_reads_its_part_of_the_request() -> None:
    r = request(
        body=b'{"eventId": "e-9"}',
        headers=[(b"x-partner", b"acme")],
        claims=fan(),
    )
    assert key_of(["ip"], r) == "[ip]9:192.0.2.1"
    assert key_of(["user"], r) == "[user]5:fan-1"
    assert key_of(["user_or_ip"], r) == "[user_or_ip]6:ufan-1"
    assert key_of(["tenant"], r) == "[tenant]8:tenant-1"
    assert key_of(["header:X-Partner"], r) == "[header:X-Partner]4:acme"
    assert key_of(["path:eventId"], r) == "[path:eventId]3:e-1"
    assert key_of(["body:eventId"], r) == "[body:eventId]4:ve-9"
    assert key_of(["user", "body:eventId"], r) == "[user,body:eventId]5:fan-14:ve-9"
    assert key_of(["api_key"], request(claims=fan("key:k1", key_id="k1"))) == "[api_key]2:k1"


def test_an_ipv6_client_is_keyed_by_its_prefix() -> None:
    one = key_of(["ip"], request(client_ip="2001:db8::1"))
    other = key_of(["ip"], request(client_ip="2001:db8::ffff"))
    assert one == other == "[ip]13:2001:db8::/64"


@pytest.mark.parametrize(
    ("parts", "r"),
    [
        (["user"], request()),
        (["tenant"], request(claims=fan(tenant=""))),
        (["api_key"], request(claims=fan())),
        (["header:x-partner"], request()),
        (["body:eventId"], request(body=b'{"other": 1}')),
        (["body:eventId"], request(body=b'{"eventId": null}')),
        (["body:eventId"], request(body=b"[1, 2]")),
        (["body:eventId"], request(body=b"not json")),
        (["body:eventId"], request(body=b"")),
        (["user", "body:eventId"], request(body=b'{"eventId": "e-1"}')),
        (["path:eventId"], request(path=PREFIX)),
    ],
)
def test_a_request_lacking_a_part_is_not_counted(parts: list[str], r: Request) -> None:
    assert key_of(parts, r) is None


def test_a_number_and_its_digits_are_one_event_and_other_values_their_json() -> None:
    def event(body: bytes) -> str | None:
        return key_of(["body:eventId"], request(body=body))

    assert event(b'{"eventId": 42}') == event(b'{"eventId": "42"}')
    assert event(b'{"eventId": true}') != event(b'{"eventId": "true"}')
    assert event(b'{"eventId": {"b": 1, "a": 2}}') == event(b'{"eventId": {"a": 2, "b": 1}}')
    assert event(b'{"eventId": [1]}') != event(b'{"eventId": "[1]"}')


def test_path_parameters_are_read_as_endpoints_match_them() -> None:
    plain = key_of(["path:eventId"], request(path=PREFIX + "/E-1/hold"))
    assert plain == key_of(["path:eventId"], request(path=PREFIX + "/e-1;x=1/hold"))
    assert plain == key_of(["path:eventId"], request(path=PREFIX + "/e-1/hold/"))


def test_separators_inside_values_cannot_make_two_keys_equal() -> None:
    spec = ["header:a", "header:b"]
    first = request(headers=[(b"a", b"x:1"), (b"b", b"y")])
    second = request(headers=[(b"a", b"x"), (b"b", b"1:y")])
    assert key_of(spec, first) != key_of(spec, second)
    # A user id never equals an address under user_or_ip.
    assert key_of(["user_or_ip"], request(claims=fan("192.0.2.1"))) != key_of(
        ["user_or_ip"], request()
    )


def test_long_values_become_a_digest_of_fixed_size() -> None:
    huge, other = "a" * 100_000, "a" * 99_999 + "b"
    assert len(bounded(huge)) == len(bounded(other)) == 33
    assert bounded(huge) != bounded(other)
    assert bounded("a" * MAX_VALUE_CHARS) == f"{MAX_VALUE_CHARS}:" + "a" * MAX_VALUE_CHARS
    long_header = request(headers=[(b"x-partner", b"z" * 10_000)])
    key = key_of(["header:x-partner"], long_header)
    assert key is not None and len(key) < 64


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("address", "unknown key 'address'"),
        ("header", "needs a name"),
        ("body:", "needs a name"),
        ("user:x", "unknown key 'user:x'"),
    ],
)
def test_a_bad_part_is_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_part(text)


async def answer(request: Request) -> Response:
    return Response(200, [])


def test_a_429_carries_only_the_headers_of_the_limit_that_refused() -> None:
    store = MemoryStore(lambda: 0.0)
    loose = RateLimit("purchase_address", Rate(20, 60_000, 0), store, by_client_ip)
    event = compile_key(["user", "body:eventId"], AddressKeys(64))
    tight = RateLimit("purchase_event", Rate(2, 60_000, 0), store, event)
    body = b'{"eventId": "e-1"}'
    for _ in range(2):
        r = request(body=body, claims=fan())
        run(loose(r, answer))
        run(tight(r, answer))
    r = request(body=body, claims=fan())
    run(loose(r, answer))
    with pytest.raises(RateLimited) as refused:
        run(tight(r, answer))

    sent = r.response_headers + refused.value.headers
    names = [name for name, _ in sent]
    assert names.count(b"ratelimit-limit") == names.count(b"x-ratelimit-limit") == 1
    assert names.count(b"ratelimit-remaining") == names.count(b"retry-after") == 1
    assert dict(sent)[b"ratelimit-limit"] == b"2"
    assert dict(sent)[b"ratelimit-remaining"] == b"0"


def test_the_ipv6_key_cache_stays_bounded_and_keeps_addresses_in_use() -> None:
    limit = RateLimit("global", Rate(10, 60_000, 0), MemoryStore(lambda: 0.0), by_client_ip)
    regular = limit.ip_key("2001:db8:ffff:1::9")
    for n in range(3 * KEY_CACHE_SIZE):
        newest = f"2001:db8:{n // 65536:x}:{n % 65536:x}::1"
        limit.ip_key(newest)
        if n % 1000 == 0:
            assert limit.ip_keys.get("2001:db8:ffff:1::9") is regular  # in use: never dropped
        assert len(limit.ip_keys) <= KEY_CACHE_SIZE
    assert limit.ip_keys.get(newest) == f"global:ip:2001:db8:0:{n:x}::/64"
    assert "2001:db8:0:0::1" not in limit.ip_keys  # never asked for again: gone


def test_an_ipv4_client_is_keyed_whole_and_nothing_is_remembered_for_it() -> None:
    store = MemoryStore(lambda: 0.0)
    limit = RateLimit("global", Rate(2, 60_000, 0), store, by_client_ip)
    for n in range(1000):
        run(limit(request(client_ip=f"10.0.{n // 256}.{n % 256}"), answer))
    assert len(limit.ip_keys) == 0  # 1,000 addresses, no memo entry: nothing to miss or fill
    run(limit(request(client_ip="10.0.0.0"), answer))  # its second request of two
    with pytest.raises(RateLimited):
        run(limit(request(client_ip="10.0.0.0"), answer))
    run(limit(request(client_ip="10.0.0.1"), answer))  # each address its own bucket
    # An IPv6 client is keyed by its /64: two addresses of one prefix share one bucket.
    run(limit(request(client_ip="2001:db8:1:2::1"), answer))
    run(limit(request(client_ip="2001:db8:1:2::2"), answer))
    with pytest.raises(RateLimited):
        run(limit(request(client_ip="2001:db8:1:2::3"), answer))
    assert limit.ip_keys.get("2001:db8:1:2::3") == "global:ip:2001:db8:1:2::/64"


def test_a_lone_user_key_counts_every_identity_in_its_earlier_form() -> None:
    store = MemoryStore(lambda: 0.0)
    limit = RateLimit("ticket_purchase", Rate(1, 60_000, 0), store, by_identity)
    assert by_identity(request()) is None
    assert by_identity(request(claims=fan())) == "user:fan-1"
    partner = request(claims=fan("key:k1", key_id="k1"))
    run(limit(partner, answer))
    with pytest.raises(RateLimited):  # an API key is an identity too: it cannot skip the limit
        run(limit(request(claims=fan("key:k1", key_id="k1")), answer))
    assert set(store.tats) == {"ticket_purchase:user:key:k1"}
