"""Stale-if-error for venue-domain lookups: a failed lookup serves the last good answer for that
key, within its age bound, asks the failing source again only after a pause, and fails closed
for a key never answered. Pure: an injected clock and a loader that fails on demand."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from api_gateway.config.loader import build, default_document
from api_gateway.directory import DomainVenue, VenueDirectory
from api_gateway.errors import ServiceUnavailable
from api_gateway.hosts import PlatformHosts
from api_gateway.lookups import CachedLookup, TtlCache
from api_gateway.network import TrustedProxies
from api_gateway.policies.domains import VenueDomain
from api_gateway.types import Request, Response

TTL_MS, RETRY_MS, STALE_MS = 1_000, 100, 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Answers from ``answers`` (missing keys: None) until told to fail."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.calls, self.fail = answers, list[str](), False

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        if self.fail:
            raise ServiceUnavailable("venue-service is down")
        return self.answers.get(key)


def lookup(source: Source, clock: Clock, stale_ms: float = STALE_MS) -> CachedLookup[str]:
    return CachedLookup(source, TTL_MS, RETRY_MS, 100, clock, stale_ms=stale_ms)


def get(lookups: CachedLookup[str], key: str) -> str | None:
    return asyncio.run(lookups.get(key))


# --- the cache -----------------------------------------------------------------------------------


def test_a_kept_entry_is_stale_after_its_expiry_and_gone_after_its_deadline() -> None:
    cache: TtlCache[str] = TtlCache(10)
    cache.put("a", "venue-a", expires_at_ms=100, kept_until_ms=1000)

    assert cache.get("a", 100) is None  # not fresh
    stale = cache.stale("a", 999)
    assert stale is not None and stale.value == "venue-a"
    cache.refresh("a", 5000)  # never past the deadline
    assert cache.get("a", 999) is not None
    assert cache.get("a", 1000) is None
    assert cache.stale("a", 1000) is None
    assert len(cache) == 0


def test_without_a_deadline_an_entry_is_gone_at_its_expiry() -> None:
    cache: TtlCache[str] = TtlCache(10)
    cache.put("a", "venue-a", expires_at_ms=100)
    assert cache.stale("a", 100) is None
    assert cache.get("a", 100) is None and len(cache) == 0


def test_kept_entries_stay_within_the_bound() -> None:
    cache: TtlCache[int] = TtlCache(3)
    for number, key in enumerate("abcd"):
        cache.put(key, number, 10, kept_until_ms=10_000)

    assert len(cache) == 3
    assert cache.stale("a", 20) is None  # the oldest went first
    assert [cache.stale(key, 20) is not None for key in "bcd"] == [True, True, True]


# --- the lookup ----------------------------------------------------------------------------------


def test_a_failed_lookup_serves_the_last_good_answer_and_a_never_seen_key_fails() -> None:
    clock, source = Clock(), Source({"tickets.venue-a.com": "venue-a"})
    domains = lookup(source, clock)
    assert get(domains, "tickets.venue-a.com") == "venue-a"
    assert get(domains, "unknown.example.org") is None

    source.fail = True
    clock.now = TTL_MS  # both answers expired
    assert get(domains, "tickets.venue-a.com") == "venue-a"
    assert get(domains, "unknown.example.org") is None  # "no venue" was a good answer too
    with pytest.raises(ServiceUnavailable):
        get(domains, "never-seen.example.org")
    assert domains.served_stale == 2


def test_a_failing_source_is_asked_again_only_after_the_retry_interval() -> None:
    clock, source = Clock(), Source({"a.com": "venue-a"})
    domains = lookup(source, clock)
    get(domains, "a.com")
    source.fail, clock.now = True, TTL_MS

    for _ in range(3):
        assert get(domains, "a.com") == "venue-a"
    assert source.calls == ["a.com", "a.com"]
    clock.now = TTL_MS + RETRY_MS
    assert get(domains, "a.com") == "venue-a"
    assert source.calls == ["a.com", "a.com", "a.com"]

    source.fail = False  # back: the fresh answer replaces the kept one
    source.answers["a.com"] = "venue-b"
    clock.now = TTL_MS + 2 * RETRY_MS
    assert get(domains, "a.com") == "venue-b"


def test_an_answer_older_than_the_bound_is_not_served() -> None:
    clock, source = Clock(), Source({"a.com": "venue-a"})
    domains = lookup(source, clock)
    get(domains, "a.com")
    source.fail = True

    clock.now = STALE_MS - 1
    assert get(domains, "a.com") == "venue-a"
    clock.now = STALE_MS - 1 + RETRY_MS  # the retry pause never outlives the bound
    with pytest.raises(ServiceUnavailable):
        get(domains, "a.com")


def test_without_a_bound_failures_stand() -> None:
    clock, source = Clock(), Source({"a.com": "venue-a"})
    domains = lookup(source, clock, stale_ms=0)
    get(domains, "a.com")
    source.fail, clock.now = True, TTL_MS

    with pytest.raises(ServiceUnavailable):
        get(domains, "a.com")


# --- the directory and the domain policy ---------------------------------------------------------


class VenueService:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.down = False

    async def resolve_domain(self, host: str) -> dict[str, object] | None:
        self.asked.append(host)
        if self.down:
            raise ServiceUnavailable("venue-service is down")
        if host == "tickets.venue-a.com":
            return {"venueId": "venue-a", "tenantId": "tenant-a"}
        return None

    async def get_venue(self, venue_id: str) -> dict[str, object] | None:
        raise AssertionError("not asked here")


def test_the_directory_keeps_domains_for_the_configured_age() -> None:
    document = default_document()
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    config = build(document).tenancy
    clock, service = Clock(), VenueService()
    directory = VenueDirectory(service, config, clock)
    policy = VenueDomain(
        directory,
        PlatformHosts(config.platform_domains),
        TrustedProxies((ipaddress.ip_network("10.0.0.0/8"),)),
        frozenset(),
    )

    def served(host: bytes) -> Request:
        request = Request("GET", b"/api/v1/events", [(b"host", host)], b"", "203.0.113.7")

        async def scenario() -> Response:
            async def passed(_: Request) -> Response:
                return Response(200, [])

            return await policy(request, passed)

        asyncio.run(scenario())
        return request

    assert (
        served(b"tickets.venue-a.com").upstream_headers
        == DomainVenue.of("venue-a", "tenant-a").headers
    )
    service.down = True
    clock.now = config.domain_stale_if_error_ms - 1
    assert (
        served(b"tickets.venue-a.com").upstream_headers
        == DomainVenue.of("venue-a", "tenant-a").headers
    )
    with pytest.raises(ServiceUnavailable):
        served(b"tickets.venue-b.com")
    for host in (b"tickettoken.com", b"www.tickettoken.com", b"localhost:3000", b"127.0.0.1"):
        served(host)
    assert service.asked == ["tickets.venue-a.com"] * 2 + ["tickets.venue-b.com"]
