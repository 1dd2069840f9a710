"""The pure parts of tenancy: the TTL cache and its single-flight lookup (injected clock), which
venues a request names, and the ``tenancy`` configuration section."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import ConfigError
from api_gateway.directory import VenueDirectory
from api_gateway.errors import BadRequest, Forbidden, ServiceUnavailable
from api_gateway.hosts import PlatformHosts
from api_gateway.lookups import CachedLookup, TtlCache
from api_gateway.network import TrustedProxies
from api_gateway.policies.domains import VenueDomain
from api_gateway.policies.tenancy import MAX_VENUE_ID_BYTES, VenueIsolation
from api_gateway.types import Claims, Request, Response
from api_gateway.venue_refs import VenuePattern, VenueRefs

# --- TtlCache ------------------------------------------------------------------------------------


def test_an_entry_lives_until_its_expiry() -> None:
    cache: TtlCache[str | None] = TtlCache(10)
    cache.put("a", "tenant-a", expires_at_ms=1000)
    cache.put("ghost", None, expires_at_ms=100)

    hit = cache.get("a", 999)
    assert hit is not None and hit.value == "tenant-a"
    hit = cache.get("ghost", 99)
    assert hit is not None and hit.value is None  # a cached "no such thing" is a hit
    assert cache.get("ghost", 100) is None
    assert cache.get("a", 1000) is None
    assert len(cache) == 0


def test_the_cache_is_bounded_and_the_oldest_entry_goes_first() -> None:
    cache: TtlCache[int] = TtlCache(3)
    for number, key in enumerate("abcd"):
        cache.put(key, number, 10_000)

    assert len(cache) == 3
    assert cache.get("a", 0) is None
    assert [cache.get(key, 0) is not None for key in "bcd"] == [True, True, True]


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 100)), max_size=50))
def test_the_cache_never_exceeds_its_bound(puts: list[tuple[str, int]]) -> None:
    cache: TtlCache[int] = TtlCache(4)
    for key, expiry in puts:
        cache.put(key, expiry, expiry)
        assert len(cache) <= 4
        assert cache.get(key, expiry - 1) is not None


# --- CachedLookup --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Answers from ``answers`` (missing keys: None), each load waiting for ``gate``."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        await self.gate.wait()
        if self.fail:
            raise ServiceUnavailable("venue-service is down")
        return self.answers.get(key)


def lookup(loader: Loader, clock: Clock) -> CachedLookup[str]:
    return CachedLookup(loader, ttl_ms=1000, negative_ttl_ms=100, max_entries=100, clock_ms=clock)


def test_answers_are_cached_for_their_ttl_and_negative_ones_for_less() -> None:
    async def scenario() -> None:
        clock, loader = Clock(), Loader({"v1": "tenant-a"})
        venues = lookup(loader, clock)

        assert await venues.get("v1") == "tenant-a"
        assert await venues.get("ghost") is None
        clock.now = 99
        assert (await venues.get("v1"), await venues.get("ghost")) == ("tenant-a", None)
        assert loader.calls == ["v1", "ghost"]
        clock.now = 100
        await venues.get("ghost")
        assert loader.calls == ["v1", "ghost", "ghost"]  # the negative answer expired
        clock.now = 1000
        await venues.get("v1")
        assert loader.calls == ["v1", "ghost", "ghost", "v1"]

    asyncio.run(scenario())


def test_concurrent_misses_share_one_load() -> None:
    async def scenario() -> None:
        loader = Loader({"v1": "tenant-a", "v2": "tenant-b"})
        venues = lookup(loader, Clock())
        loader.gate.clear()
        waiters = [asyncio.ensure_future(venues.get(key)) for key in ["v1"] * 5 + ["v2"]]
        await asyncio.sleep(0)
        loader.gate.set()

        assert await asyncio.gather(*waiters) == ["tenant-a"] * 5 + ["tenant-b"]
        assert sorted(loader.calls) == ["v1", "v2"]

    asyncio.run(scenario())


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    async def scenario() -> None:
        loader = Loader({"v1": "tenant-a"})
        venues = lookup(loader, Clock())
        loader.fail = True
        loader.gate.clear()
        waiters = [asyncio.ensure_future(venues.get("v1")) for _ in range(3)]
        await asyncio.sleep(0)
        loader.gate.set()

        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(o, ServiceUnavailable) for o in outcomes), outcomes
        loader.fail = False
        assert await venues.get("v1") == "tenant-a"
        assert loader.calls == ["v1", "v1"]

    asyncio.run(scenario())


def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    async def scenario() -> None:
        loader = Loader({"v1": "tenant-a"})
        venues = lookup(loader, Clock())
        loader.gate.clear()
        first = asyncio.ensure_future(venues.get("v1"))
        second = asyncio.ensure_future(venues.get("v1"))
        await asyncio.sleep(0)
        first.cancel()
        loader.gate.set()

        assert await second == "tenant-a"
        assert venues.cached("v1") is not None
        assert loader.calls == ["v1"]

    asyncio.run(scenario())


# --- which venues a request names ----------------------------------------------------------------

PATTERNS = [VenuePattern.parse("/venues/{venue}"), VenuePattern.parse("/venue/{venue}")]
REFS = VenueRefs("/api/v1", PATTERNS, ["venueId", "venue_id"])


@pytest.mark.parametrize(
    ("path", "query", "venues"),
    [
        ("/api/v1/venues/v1", b"", ["v1"]),
        ("/api/v1/venues/v1/", b"", ["v1"]),
        ("/api/v1/venues/v1/events/9", b"", ["v1"]),
        ("/api/v1/venue/v-2", b"", ["v-2"]),
        ("/api/v1/venues", b"", []),
        ("/api/v1/venues/", b"", []),
        ("/api/v1/events/9", b"", []),
        ("/api/v1/events/9", b"venueId=v1", ["v1"]),
        ("/api/v1/events", b"venue_id=v1&x=venueId", ["v1"]),
        ("/api/v1/events", b"VENUEID=v1", ["v1"]),
        ("/api/v1/events", b"venue%49d=v1", ["v1"]),
        ("/api/v1/events", b"venueId%5B%5D=v1&venueId[0]=v2", ["v1", "v2"]),
        ("/api/v1/events", b"venueId=mine&venueId=theirs", ["mine", "theirs"]),
        ("/api/v1/events", b"venueId=a%20b&venue_id=a+b", ["a b"]),
        ("/api/v1/events", b"venueId=&venueId", []),
        ("/api/v1/venues/v1", b"venueId=v1&venueId=v2", ["v1", "v2"]),
        ("/api/v1/venues/a%2Fb", b"", ["a/b"]),
        ("/api/v1/venuesX/v1", b"", []),
        ("/other/venues/v1", b"", []),
    ],
)
def test_the_venues_a_request_names(path: str, query: bytes, venues: list[str]) -> None:
    assert REFS.named(path, query) == venues


def test_a_route_only_gets_the_patterns_that_can_match_it() -> None:
    assert [p.overlaps("/venues") for p in PATTERNS] == [True, False]
    assert VenuePattern.parse("/events/venue/{venue}").overlaps("/events")
    assert not VenueRefs("/api/v1", [], [])
    assert VenueRefs("/api/v1", [], ["venueId"])


@pytest.mark.parametrize(
    "pattern", ["venues/{venue}", "/{venue}", "/venues", "/venues/{venue}/x", "/a/../{venue}"]
)
def test_malformed_venue_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError):
        VenuePattern.parse(pattern)


# --- configuration -------------------------------------------------------------------------------


def tenancy_config(**overrides: Any) -> Any:
    document = copy.deepcopy(default_document())
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    document["tenancy"].update(overrides)
    return build(document).tenancy


def test_the_defaults() -> None:
    config = tenancy_config()

    assert config.domain_routing and config.venue_isolation
    assert config.platform_domains == (
        "tickettoken.com",
        "*.tickettoken.com",
        "localhost",
        "127.0.0.1",
    )
    assert config.domain_stale_if_error_ms == 86_400_000
    assert config.admin_roles == frozenset({"super_admin"})
    assert (config.domain_cache_ttl_ms, config.venue_cache_ttl_ms) == (60_000, 60_000)
    assert config.negative_ttl_ms == 5_000
    assert config.venue_params == ("venueId", "venue_id")


def test_platform_domains_are_kept_canonical() -> None:
    config = tenancy_config(platform_domains=["API.Example.io.", "*.Venues.Example.io"])

    assert config.platform_domains == ("api.example.io", "*.venues.example.io")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"platform_domains": ["bad host"]}, "tenancy.platform_domains"),
        ({"platform_domains": ["api.example.io:443"]}, "tenancy.platform_domains"),
        ({"venue_paths": ["/venues"]}, "tenancy.venue_paths"),
        ({"negative_ttl_ms": -1}, "tenancy.negative_ttl_ms"),
        ({"domain_stale_if_error_ms": -1}, "tenancy.domain_stale_if_error_ms"),
        ({"cache_size": 0}, "tenancy.cache_size"),
        ({"admin_roles": [1]}, "tenancy.admin_roles"),
        ({"unknown": 1}, "tenancy.unknown"),
    ],
)
def test_bad_tenancy_settings_are_named(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tenancy_config(**overrides)
    assert caught.value.key == key


# --- the domain policy, over a venue service stand-in ----------------------------------------


class VenueService:
    """Stands in for VenueServiceClient: answers from dicts and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve_domain(self, host: str) -> dict[str, object] | None:
        self.asked.append(host)
        known: dict[str, dict[str, object]] = {
            "tickets.venue-a.com": {"venueId": "venue-a", "tenantId": "tenant-a"}
        }
        return known.get(host)

    async def get_venue(self, venue_id: str) -> dict[str, object] | None:
        self.asked.append(venue_id)
        return {"id": venue_id, "tenantId": "tenant-a"} if venue_id == "venue-a" else None


def domain_policy(service: VenueService, trusted: str = "10.0.0.0/8") -> VenueDomain:
    config = tenancy_config()
    directory = VenueDirectory(service, config, Clock())
    proxies = TrustedProxies((ipaddress.ip_network(trusted),))
    return VenueDomain(directory, PlatformHosts(config.platform_domains), proxies, frozenset())


async def passed(req: Request) -> Response:
    return Response(200, [])


def through(policy: VenueDomain, req: Request) -> Request:
    async def scenario() -> None:
        await policy(req, passed)

    asyncio.run(scenario())
    return req


def test_a_trusted_proxys_forwarded_host_is_the_clients_host() -> None:
    service = VenueService()
    headers = [(b"host", b"gateway.internal"), (b"x-forwarded-host", b"x.io, tickets.venue-a.com")]

    req = through(domain_policy(service), Request("GET", b"/", headers, b"", "10.1.1.1"))

    assert service.asked == ["tickets.venue-a.com"]
    assert req.upstream_headers == [
        (b"x-venue-id", b"venue-a"),
        (b"x-venue-tenant-id", b"tenant-a"),
    ]


def test_an_untrusted_peers_forwarded_host_is_ignored() -> None:
    service = VenueService()
    headers = [(b"host", b"gateway.test"), (b"x-forwarded-host", b"tickets.venue-a.com")]

    req = through(domain_policy(service), Request("GET", b"/", headers, b"", "203.0.113.9"))

    assert service.asked == [] and req.upstream_headers == []


def test_a_request_without_host_is_the_platforms() -> None:
    service = VenueService()

    req = through(domain_policy(service), Request("GET", b"/", [], b"", "203.0.113.9", "1.0"))

    assert service.asked == [] and req.upstream_headers == []


# --- bounded in bytes ----------------------------------------------------------------------------


def test_the_cache_is_bounded_in_bytes_whatever_its_keys() -> None:
    cache: TtlCache[int] = TtlCache(10_000, max_bytes=64 * 1024)
    for n in range(200):
        cache.put(f"{n:04d}" + "k" * 2000, n, 10_000)

    assert 0 < len(cache) < 200
    assert sum(len(key) for key in cache.entries) <= 64 * 1024
    assert cache.get("0199" + "k" * 2000, 0) is not None  # the newest stays
    assert cache.size <= 64 * 1024
    cache.put("x" * 70_000, 1, 10_000)  # one key beyond the whole bound: not kept
    assert cache.get("x" * 70_000, 0) is None and cache.size <= 64 * 1024


def isolation(service: VenueService) -> VenueIsolation:
    directory = VenueDirectory(service, tenancy_config(), Clock())
    return VenueIsolation(directory, REFS, frozenset({"super_admin"}))


def test_a_venue_id_longer_than_any_real_one_is_refused_without_a_lookup() -> None:
    """Real ids are UUIDs; a 7 KiB one cost a lookup and a cached "no such venue" each."""
    service = VenueService()
    policy = isolation(service)
    claims = Claims("user-1", "tenant-a", "customer", "u@example.com", 0.0)
    longest = "v" * MAX_VENUE_ID_BYTES

    for path, query in [
        ("/api/v1/venues/" + "v" * 7000, b""),
        ("/api/v1/venues/" + "v" * (MAX_VENUE_ID_BYTES + 1), b""),
        ("/api/v1/venues/" + "\u00e9" * 65, b""),  # 65 characters, 130 bytes
        ("/api/v1/events", b"venueId=" + b"v" * 7000),
    ]:
        with pytest.raises(Forbidden):
            policy.unresolved(path, query, claims)
    assert service.asked == []
    assert policy.unresolved("/api/v1/venues/" + longest, b"", claims) == [longest]


def test_a_query_naming_too_many_venues_is_refused_after_reading_one_more() -> None:
    """1,300 distinct ids fit an 8 KiB query; collecting them all before counting was quadratic
    (10 ms of the event loop per request)."""
    query = b"&".join(b"venueId=v%d" % n for n in range(1300))
    assert REFS.named("/api/v1/events", query, limit=16) == [f"v{n}" for n in range(17)]
    assert len(REFS.named("/api/v1/events", query)) == 1300

    service = VenueService()
    claims = Claims("user-1", "tenant-a", "customer", "u@example.com", 0.0)
    with pytest.raises(BadRequest):
        isolation(service).unresolved("/api/v1/events", query, claims)
    assert service.asked == []
