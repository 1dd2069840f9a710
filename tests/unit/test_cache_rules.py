"""The response cache's pure parts: Cache-Control, freshness, Vary, keys, the entry format and
the bounded in-memory storage (with an injected clock)."""

from __future__ import annotations

import asyncio
import hashlib
import random

from hypothesis import given
from hypothesis import strategies as st

from api_gateway.cache import entry as wire
from api_gateway.cache import rules, view
from api_gateway.cache.entry import Entry, Variants
from api_gateway.cache.storage import MemoryCacheStorage, entry_bytes
from api_gateway.types import Claims, Headers, Request

DAY_MS = 86_400_000


def request(
    path: str = "/api/v1/events/42",
    query: bytes = b"",
    tenant: str | None = "tenant-a",
    user: str = "user-1",
    headers: Headers | None = None,
) -> Request:
    req = Request("GET", path.encode() + (b"?" + query if query else b""), headers or [], b"", "")
    req.path, req.query = path, query
    if tenant is not None:
        req.claims = Claims(user, tenant, "customer", "u@example.com", 0.0)
    return req


def fresh(
    headers: Headers, status: int = 200, default_ttl_ms: int = 0, shared_only: bool = False
) -> rules.Freshness | None:
    return rules.freshness(status, headers, default_ttl_ms, shared_only, DAY_MS)


# --- Cache-Control and freshness -----------------------------------------------------------------


def test_cache_control_directives_are_read_case_insensitively() -> None:
    control = rules.parse_cache_control(b'Public, MAX-AGE=60, s-maxage="30", x-other')
    assert control.public and control.max_age == 60 and control.s_maxage == 30
    assert not control.no_store and not control.private


def test_an_unreadable_or_repeated_max_age_is_read_safely() -> None:
    assert rules.parse_cache_control(b"max-age=soon").max_age == 0
    assert rules.parse_cache_control(b"max-age=60, max-age=5").max_age == 5


def test_several_age_values_count_as_the_largest() -> None:
    """A second, larger ``Age`` line (or list member) must not be ignored: the answer would be
    kept longer than the service allowed."""
    minute = (b"cache-control", b"max-age=60")
    assert fresh([minute, (b"age", b"10"), (b"age", b"50")]) == rules.Freshness(10_000, 50)
    assert fresh([minute, (b"age", b"10, 50")]) == rules.Freshness(10_000, 50)
    assert fresh([minute, (b"age", b"50"), (b"age", b"10")]) == rules.Freshness(10_000, 50)
    assert fresh([minute, (b"age", b"5"), (b"age", b"70")]) is None
    # An unreadable member is ignored (RFC 9111 \u00a75.1); the readable ones still count.
    assert fresh([minute, (b"age", b"soon"), (b"age", b"20")]) == rules.Freshness(40_000, 20)


def test_cache_control_directives_of_every_line_combine() -> None:
    assert fresh([(b"cache-control", b"max-age=60"), (b"cache-control", b"no-store")]) is None
    assert fresh([(b"cache-control", b"public"), (b"cache-control", b"private")]) is None
    shorter = [(b"cache-control", b"max-age=600"), (b"cache-control", b"max-age=60")]
    assert fresh(shorter) == rules.Freshness(60_000, 0)


def test_delta_seconds_beyond_any_integer_are_read_as_2_to_the_31() -> None:
    """RFC 9111 \u00a71.2.2; and 5,000 digits would make ``int()`` raise (the 4,300 digit limit),
    turning a service's header into an error for the client."""
    huge = b"9" * 5000
    assert rules.parse_cache_control(b"max-age=" + huge).max_age == 2**31
    assert rules.parse_cache_control(b"s-maxage=" + huge).s_maxage == 2**31
    assert fresh([(b"cache-control", b"max-age=60"), (b"age", huge)]) is None
    forever = (b"cache-control", b"max-age=" + huge)
    assert rules.freshness(200, [forever, (b"age", b"4294967296")], 0, False, 2**62) is None
    old = rules.freshness(200, [forever, (b"age", b"%d" % (2**31 - 5))], 0, False, 2**62)
    assert old == rules.Freshness(5000, 2**31 - 5)
    # What is stored can be encoded: the Age field of an entry holds 32 bits.
    assert wire.decode(wire.encode(Entry(200, [], b"", 0.0, old.age_s))) is not None


def test_s_maxage_wins_over_max_age_and_age_is_deducted() -> None:
    found = fresh([(b"cache-control", b"max-age=600, s-maxage=60"), (b"age", b"10")])
    assert found == rules.Freshness(50_000, 10)


def test_what_is_never_stored() -> None:
    ok = (b"cache-control", b"max-age=60")
    assert fresh([ok]) is not None
    assert fresh([ok, (b"set-cookie", b"session=1")]) is None
    assert fresh([(b"cache-control", b"private, max-age=60")]) is None
    assert fresh([(b"cache-control", b"no-store, max-age=60")]) is None
    assert fresh([(b"cache-control", b"no-cache, max-age=60")]) is None
    assert fresh([ok, (b"vary", b"accept, *")]) is None
    assert fresh([(b"cache-control", b"max-age=0")], default_ttl_ms=5000) is None
    for status in (201, 206, 301, 304, 404, 500):
        assert fresh([ok], status=status) is None


def test_without_a_lifetime_only_the_routes_default_stores() -> None:
    assert fresh([]) is None
    assert fresh([], default_ttl_ms=5000) == rules.Freshness(5000, 0)


def test_lifetimes_are_capped() -> None:
    assert rules.freshness(200, [(b"cache-control", b"max-age=999999")], 0, False, 1000) == (
        rules.Freshness(1000, 0)
    )


def test_an_answer_to_credentials_needs_the_upstreams_consent_to_be_shared() -> None:
    assert fresh([(b"cache-control", b"max-age=60")], shared_only=True) is None
    assert fresh([(b"cache-control", b"public, max-age=60")], shared_only=True) is not None
    assert fresh([(b"cache-control", b"s-maxage=60")], shared_only=True) is not None
    assert fresh([], default_ttl_ms=1000, shared_only=True) is not None


def test_vary_names_are_normalized() -> None:
    assert rules.vary_names([(b"vary", b"Accept-Language, accept"), (b"vary", b"")]) == (
        b"accept",
        b"accept-language",
    )
    assert rules.vary_names([]) == ()
    assert rules.vary_names([(b"vary", b"*")]) is None


def test_conditional_and_range_requests_bypass() -> None:
    assert rules.bypasses(request(headers=[(b"range", b"bytes=0-1")]))
    assert rules.bypasses(request(headers=[(b"if-none-match", b'"x"')]))
    assert not rules.bypasses(request(headers=[(b"accept", b"*/*")]))


# --- keys ----------------------------------------------------------------------------------------

params = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"page", b"q", b"sort"]), st.binary(max_size=5)),
    max_size=6,
    unique_by=lambda p: p[0],
)


@given(params, st.randoms())
def test_the_order_of_query_parameters_never_changes_the_key(
    pairs: list[tuple[bytes, bytes]], rnd: random.Random
) -> None:
    query = b"&".join(n + b"=" + v.replace(b"&", b"") for n, v in pairs)
    shuffled = query.split(b"&")
    rnd.shuffle(shuffled)
    first = rules.entry_key(request(query=query), "/r", "0", False)
    second = rules.entry_key(request(query=b"&".join(shuffled)), "/r", "0", False)
    assert first == second


def test_the_order_of_a_repeated_parameter_is_kept() -> None:
    assert rules.canonical_query(b"b=1&a=2&a=1") == b"a=2&a=1&b=1"


tenants = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)


@given(tenants, tenants, st.booleans())
def test_different_tenants_never_share_a_key(first: str, second: str, per_user: bool) -> None:
    if first == second:
        return
    one = rules.entry_key(request(tenant=first), "/r", "0", per_user)
    other = rules.entry_key(request(tenant=second), "/r", "0", per_user)
    assert one != other


def test_anonymous_requests_have_a_tenant_of_their_own() -> None:
    anonymous = rules.entry_key(request(tenant=None), "/r", "0", False)
    assert anonymous != rules.entry_key(request(tenant="public-ish"), "/r", "0", False)


def test_users_share_a_key_unless_the_route_is_per_user() -> None:
    one, two = request(user="u1"), request(user="u2")
    assert rules.entry_key(one, "/r", "0", False) == rules.entry_key(two, "/r", "0", False)
    assert rules.entry_key(one, "/r", "0", True) != rules.entry_key(two, "/r", "0", True)


def test_the_generation_and_path_are_part_of_the_key() -> None:
    base = rules.entry_key(request(), "/r", "0", False)
    assert base != rules.entry_key(request(), "/r", "1", False)
    assert base != rules.entry_key(request(path="/api/v1/events/43"), "/r", "0", False)


def test_variants_are_keyed_by_the_request_header_values() -> None:
    assert rules.variant_key("k", (b"en",)) != rules.variant_key("k", (b"fr",))
    assert rules.variant_key("k", (None,)) != rules.variant_key("k", (b"",))


def test_resources_and_what_a_write_invalidates() -> None:
    prefix = "/api/v1/events"
    assert rules.resource("/api/v1/events", prefix) == prefix
    assert rules.resource("/api/v1/events/", prefix) == prefix
    assert rules.resource("/api/v1/events/42/tickets", prefix) == "/api/v1/events/42"
    assert rules.invalidated("/api/v1/events/42/tickets/7", prefix) == ("/api/v1/events/42", prefix)
    assert rules.invalidated("/api/v1/events", prefix) == (prefix,)


def test_a_resources_keys_share_one_hash_tag() -> None:
    tag = "{/api/v1/events/42}"
    assert tag in rules.generation_key("/api/v1/events/42")
    assert tag in rules.entry_key(request(), "/api/v1/events/42", "0", False)


def test_an_entrys_key_names_its_generations_key() -> None:
    for resource in ("/api/v1/events/42", "/api/v1/events/a}:b}", "/api/v1/events"):
        key = rules.entry_key(request(), resource, "0a1b2c3d4e5f", False)
        gen = rules.generation_key(resource)
        assert rules.generation_key_of(key) == gen
        assert rules.generation_key_of(rules.variant_key(key, (b"x", None))) == gen


# --- the entry format ----------------------------------------------------------------------------


def test_entries_round_trip() -> None:
    entry = Entry(200, [(b"content-type", b"application/json")], b'{"a":1}\r\n', 1.5e12, 3)
    assert wire.decode(wire.encode(entry)) == entry
    variants = Variants((b"accept", b"accept-language"))
    assert wire.decode(wire.encode_variants(variants)) == variants


@given(st.binary(max_size=64))
def test_any_foreign_value_decodes_to_a_miss_or_a_safe_entry(data: bytes) -> None:
    found = wire.decode(data)
    if isinstance(found, Entry):
        assert 200 <= found.status <= 299
        for name, value in found.headers:
            assert name and not any(c in name for c in (b"\r", b"\n", b":"))
            assert b"\r" not in value and b"\n" not in value


def test_truncated_or_foreign_values_are_misses() -> None:
    data = wire.encode(Entry(200, [(b"etag", b'"1"')], b"body", 0.0, 0))
    assert wire.decode(data[:10]) is None
    assert wire.decode(b"\x02" + data[1:]) is None
    assert wire.decode(b"not an entry at all") is None
    split = wire.encode(Entry(200, [(b"x", b"1\r\nset-cookie: a=1")], b"", 0.0, 0))
    assert wire.decode(split) is None


def test_age_grows_with_residence() -> None:
    entry = Entry(200, [], b"", 10_000.0, 5)
    assert entry.age_at(12_500.0) == 7
    assert entry.age_at(9_000.0) == 5  # another process's clock a little behind


# --- the in-memory storage -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_entries_expire_and_are_bounded() -> None:
    async def scenario() -> None:
        clock = Clock()
        small = entry_bytes("a", b"1234")  # key, value and bookkeeping
        storage = MemoryCacheStorage(2, 2 * small + 3, DAY_MS, clock)
        await storage.put("a", b"1234", 100)
        assert await storage.get("a") == b"1234"
        clock.now += 100
        assert await storage.get("a") is None
        await storage.put("a", b"1234", 1000)
        await storage.put("b", b"1234", 1000)
        await storage.get("a")  # a is now the most recently used
        await storage.put("c", b"1234", 1000)
        assert await storage.get("b") is None and await storage.get("a") == b"1234"
        await storage.put("d", b"12345678", 1000)  # over the byte bound: the oldest go
        assert storage.size <= 2 * small + 3 and await storage.get("d") == b"12345678"
        assert await storage.get("c") is None
        await storage.put("huge", b"x" * (2 * small), 1000)
        assert await storage.get("huge") is None

    asyncio.run(scenario())


def test_memory_generations_change_and_are_never_reused() -> None:
    async def scenario() -> None:
        clock = Clock()
        storage = MemoryCacheStorage(2, 1000, 500, clock)
        first = await storage.generation("r")
        assert await storage.generation("r") == first  # stable while nothing is written
        await storage.invalidate("r")
        second = await storage.generation("r")
        await storage.invalidate("s")
        await storage.invalidate("t")  # too many generations: the oldest, r's, is forgotten
        third = await storage.generation("r")
        clock.now += 500
        fourth = await storage.generation("r")
        assert len({first, second, third, fourth}) == 4
        assert len(storage.generations) == 2

    asyncio.run(scenario())


def test_an_answer_stored_under_an_old_generation_never_comes_back() -> None:
    """A read that began before a write stores its (old) answer after the write; once the
    write's generation has expired, the resource must not fall back to the read's."""

    async def scenario() -> None:
        clock = Clock()
        storage = MemoryCacheStorage(100, 1000, 500, clock)
        before_write = await storage.generation("r")
        clock.now += 10
        await storage.invalidate("r")  # the write
        clock.now += 10
        await storage.put(f"r:{before_write}", b"old answer", 500)  # the slow read's save
        clock.now += 495  # the write's generation has expired; the old answer has not
        now = await storage.generation("r")
        assert await storage.get(f"r:{now}") is None

    asyncio.run(scenario())


# --- bounded in bytes, whatever the client sends ------------------------------------------------


def test_a_long_resource_segment_is_named_by_a_fixed_size_digest() -> None:
    prefix = "/api/v1/events"
    long_a, long_b = "a" * 7000, "a" * 6999 + "b"
    named = rules.resource(f"{prefix}/{long_a}/tickets", prefix)

    assert len(named) <= len(prefix) + 1 + rules.MAX_RESOURCE_SEGMENT
    assert named == rules.resource(f"{prefix}/{long_a}", prefix)
    assert named != rules.resource(f"{prefix}/{long_b}", prefix)
    assert rules.invalidated(f"{prefix}/{long_a}", prefix) == (named, prefix)
    assert len(rules.generation_key(named)) < 100
    # Every plausible id stays readable in the keys; a digest is never mistaken for one.
    uuid = "0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"
    assert rules.resource(f"{prefix}/{uuid}", prefix) == f"{prefix}/{uuid}"
    assert "#" in named and "#" not in rules.resource(f"{prefix}/{'a' * 128}", prefix)


def test_the_memory_storage_counts_keys_towards_its_bytes() -> None:
    """Long keys with tiny values: the byte bound must hold what an entry really costs."""

    async def scenario() -> None:
        storage = MemoryCacheStorage(10_000, 64 * 1024, DAY_MS, Clock())
        for n in range(200):
            await storage.put(f"{n:04d}" + "k" * 2000, b"v", 1000)
        held = sum(len(key) + len(value) for key, (_, value) in storage.entries.items())
        assert held <= 64 * 1024
        assert 0 < len(storage.entries) < 200
        assert storage.size <= 64 * 1024

    asyncio.run(scenario())


# --- Expires and Date ----------------------------------------------------------------------------

DATE = (b"date", b"Sun, 06 Dec 2026 17:00:00 GMT")
IN_A_MINUTE = b"Sun, 06 Dec 2026 17:01:00 GMT"
IN_AN_HOUR = b"Sun, 06 Dec 2026 18:00:00 GMT"


def test_expires_is_the_lifetime_when_no_max_age_is_given() -> None:
    """RFC 9111 §4.2.1: ``Expires`` minus ``Date``; a route's default is for answers that say
    nothing, never longer than the service allowed."""
    assert fresh([DATE, (b"expires", IN_A_MINUTE)]) == rules.Freshness(60_000, 0)
    assert fresh([DATE, (b"expires", IN_A_MINUTE)], default_ttl_ms=600_000) == (
        rules.Freshness(60_000, 0)
    )
    # Already expired, or "0" (an invalid date is a time in the past): not stored.
    assert fresh([DATE, (b"expires", b"0")], default_ttl_ms=600_000) is None
    assert fresh([DATE, (b"expires", DATE[1])], default_ttl_ms=600_000) is None
    # max-age and s-maxage win over Expires.
    assert fresh([DATE, (b"expires", b"0"), (b"cache-control", b"max-age=30")]) == (
        rules.Freshness(30_000, 0)
    )


def test_several_expires_or_date_lines_give_the_shortest_lifetime() -> None:
    two_expires = [DATE, (b"expires", IN_AN_HOUR), (b"expires", IN_A_MINUTE)]
    assert fresh(two_expires, default_ttl_ms=600_000) == rules.Freshness(60_000, 0)
    later = (b"date", b"Sun, 06 Dec 2026 17:00:30 GMT")
    assert fresh([DATE, later, (b"expires", IN_A_MINUTE)]) == rules.Freshness(30_000, 0)
    assert fresh([later, DATE, (b"expires", IN_A_MINUTE)]) == rules.Freshness(30_000, 0)
    # Without a Date to measure from, or with an unreadable one, Expires gives nothing.
    assert fresh([(b"expires", IN_AN_HOUR)], default_ttl_ms=600_000) is None
    assert fresh([(b"date", b"soon"), (b"expires", IN_AN_HOUR)], default_ttl_ms=600_000) is None


@given(st.binary(max_size=80))
def test_any_date_value_is_read_or_refused_never_raises(value: bytes) -> None:
    found = rules.http_date(value)
    assert found is None or isinstance(found, int)


def streamed_digest(*parts: bytes) -> str:
    """The digest as first written: one update per length and per part."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(len(part).to_bytes(4, "big"))
        hasher.update(part)
    return hasher.hexdigest()


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_the_digest_is_the_same_as_one_update_per_length_and_part(parts: list[bytes]) -> None:
    assert rules.digest(*parts) == streamed_digest(*parts)


texts = st.characters(min_codepoint=32, max_codepoint=126)  # as user ids and paths are


@given(st.text(texts, max_size=40), st.binary(max_size=300), tenants, st.text(texts, max_size=300))
def test_an_entrys_key_keeps_its_value(path: str, query: bytes, tenant: str, user: str) -> None:
    """Built in place, the key is still the digest of its seven parts (keys in Redis stay)."""
    req = request("/api/v1/events/" + path, query, tenant, user)
    parts = (b"GET", req.path.encode(), rules.canonical_query(query), view.origin(req))
    for per_user in (False, True):
        hashed = streamed_digest(*parts, tenant.encode(), (user if per_user else "").encode())
        assert rules.entry_key(req, "/r", "g0", per_user) == f"cache:{{/r}}:g0:{hashed}"


def test_digests_are_remembered_only_up_to_a_bound_in_bytes() -> None:
    short, long = [b"s" * 100], [b"l" * (rules.MAX_MEMO_INPUT + 1)]
    assert rules.hashed(short) == rules.hashed(list(short))
    assert b"s" * 100 in rules._DIGESTS
    assert rules.hashed(long) == rules.hashed(list(long))
    assert b"l" * (rules.MAX_MEMO_INPUT + 1) not in rules._DIGESTS
