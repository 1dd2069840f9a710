"""Unit tests for JWKS key sets: reading a document (junk entries skipped, the rest kept), the
refresh schedule (max-age clamped, backoff), the unknown-kid rule and single flight.

Everything runs on injected clocks; the fetch is an in-memory coroutine the test releases, so
no test sleeps or touches the network (tests/integration/test_jwks.py does, with a real server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.keypairs import ec_key, ed25519_key, jwk, rsa_key, shared_ec_key, shared_rsa_key

from api_gateway.config.settings import JwtConfig
from api_gateway.jwks import MAX_ENTRIES, JwksKeys, Unusable, document_keys
from api_gateway.jwks_fetch import (
    DEFAULT_PERIOD_S,
    MAX_PERIOD_S,
    MIN_PERIOD_S,
    Fetched,
    Fetcher,
    FetchFailed,
    RefreshSchedule,
    max_age,
    target,
)
from api_gateway.keys import secret_key

ALLOWED = frozenset({"RS256", "ES256", "EdDSA"})


def document(*entries: object) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


def skipped(entry: dict[str, Any]) -> str:
    """Why ``entry`` is skipped, checking that the good entry beside it is kept."""
    good = jwk(shared_ec_key(), "good")
    keys, problems = document_keys(document(entry, good), ALLOWED)
    assert [key.kid for key in keys] == ["good"]
    assert len(problems) == 1 and problems[0].startswith("entry 0")
    return problems[0]


# Reading a document.


def test_rsa_ec_and_okp_keys_are_read_with_their_algorithms() -> None:
    entries = [jwk(shared_rsa_key(), "r"), jwk(shared_ec_key(), "e"), jwk(ed25519_key(), "o")]
    keys, problems = document_keys(document(*entries), ALLOWED)
    assert problems == []
    assert {key.kid: key.algorithms for key in keys} == {
        "r": {"RS256"},
        "e": {"ES256"},
        "o": {"EdDSA"},
    }


def test_a_key_without_kid_use_or_alg_is_kept() -> None:
    keys, _ = document_keys(document(jwk(shared_ec_key(), None, use=None)), ALLOWED)
    assert [key.kid for key in keys] == [None]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kty": "XYZ"}, "unknown key type"),
        ({"kty": None}, "unknown key type"),
        ({"use": "enc"}, "'use' is not 'sig'"),
        ({"alg": "ES384"}, "'alg' is not one of jwt.algorithms"),
        ({"alg": 7}, "'alg' is not one of jwt.algorithms"),
        ({"alg": "RS256"}, "does not fit its type"),
        ({"kid": 17}, "'kid' is not a short string"),
        ({"kid": ""}, "'kid' is not a short string"),
        ({"kid": "k" * 300}, "'kid' is not a short string"),
        ({"key_ops": ["encrypt"]}, "'key_ops' do not include 'verify'"),
        ({"x": "!!not base64!!"}, "unreadable key parameters"),
        ({"crv": "P-999"}, "unreadable key parameters"),
        ({"y": None}, "unreadable key parameters"),
    ],
)
def test_each_kind_of_junk_ec_entry_is_skipped(change: dict[str, Any], reason: str) -> None:
    entry = {**jwk(ec_key(), "junk"), **change}
    assert reason in skipped(entry)


def test_symmetric_keys_are_never_taken_from_a_jwks() -> None:
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    problem = skipped({"kty": "oct", "k": secret, "kid": "hmac", "alg": "HS256"})
    assert "symmetric" in problem and secret not in problem


def test_a_published_private_key_is_refused_and_not_logged() -> None:
    entry = jwk(ec_key(), "leak", private=True)
    problem = skipped(entry)
    assert "private key" in problem and entry["d"] not in problem


def test_an_rsa_key_under_2048_bits_is_skipped() -> None:
    assert "1024 bits" in skipped(jwk(rsa_key(1024), "small"))


def test_a_key_on_a_curve_not_allowed_is_skipped() -> None:
    assert "allowed algorithms" in skipped(jwk(ec_key(ec.SECP384R1()), "p384"))


def test_an_entry_that_is_no_object_is_skipped() -> None:
    assert "not a JSON object" in skipped("a string")  # type: ignore[arg-type]


def test_a_duplicate_kid_keeps_the_first_entry() -> None:
    first, second = jwk(shared_rsa_key(), "same"), jwk(shared_ec_key(), "same")
    keys, problems = document_keys(document(first, second), ALLOWED)
    assert [(key.kid, key.algorithms) for key in keys] == [("same", frozenset({"RS256"}))]
    assert "duplicate" in problems[0]


def test_entries_past_the_cap_are_ignored() -> None:
    entry = jwk(shared_ec_key(), None)
    keys, problems = document_keys(document(*[entry] * (MAX_ENTRIES + 5)), ALLOWED)
    assert len(keys) == MAX_ENTRIES and "ignored" in problems[0]


@pytest.mark.parametrize(
    "body", [b"not json", b"\xff\xfe", b'["keys"]', b'{"keys": {}}', b"{}", b"[" * 100_000]
)
def test_a_document_that_is_no_jwks_is_unusable(body: bytes) -> None:
    with pytest.raises(Unusable, match="not a JWKS document"):
        document_keys(body, ALLOWED)


# Cache-Control.


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("max-age=300", 300.0),
        ("public, MAX-AGE=120, must-revalidate", 120.0),
        ('max-age="90"', 90.0),
        ("no-store", 0.0),
        ("max-age=600, no-cache", 0.0),
        ("max-age=abc", None),
        ("max-age=-5", None),
        ("public", None),
        ("", None),
        ("max-age=" + "9" * 40, 1e9),
    ],
)
def test_max_age_is_read_from_cache_control(value: str, seconds: float | None) -> None:
    assert max_age(value) == seconds


# The request.


def test_the_request_names_the_path_and_host_but_never_credentials() -> None:
    request = target("https://user:secret@auth.example:8443/a b/\u00e9?v=1 2&w=%20").head
    assert request == (
        b"GET /a%20b/%C3%A9?v=1%202&w=%20 HTTP/1.1\r\nHost: auth.example:8443\r\n"
        b"Accept: application/json\r\nUser-Agent: api-gateway-jwks\r\nConnection: close\r\n\r\n"
    )
    assert target("http://[::1]/jwks").host == "::1"
    assert target("http://h/").port == 80 and target("https://h/").port == 443


@pytest.mark.parametrize("url", ["http://h:99999/", "http://h\u00e9/", "ftp://h/", "http:///x"])
def test_an_unusable_url_fails_each_fetch_not_start_up(url: str) -> None:
    fetcher = Fetcher(url, 1.0, 1024)
    with pytest.raises(FetchFailed, match="JWKS URL"):
        asyncio.run(fetcher.fetch())


# The refresh schedule.


@pytest.mark.parametrize(
    ("age", "period"),
    [
        (None, DEFAULT_PERIOD_S),
        (0.0, MIN_PERIOD_S),
        (10.0, MIN_PERIOD_S),
        (3600.0, 3600.0),
        (10.0**7, MAX_PERIOD_S),
    ],
)
def test_the_period_follows_max_age_clamped(age: float | None, period: float) -> None:
    schedule = RefreshSchedule(rng=lambda: 0.0)
    assert schedule.succeeded(1000.0, age) == 1000.0 + period


def test_jitter_shortens_the_period_by_at_most_a_tenth() -> None:
    assert RefreshSchedule(rng=lambda: 1.0).succeeded(0.0, 3600.0) == pytest.approx(3240.0)


def test_failures_back_off_from_5_s_up_to_the_period() -> None:
    schedule = RefreshSchedule(rng=lambda: 0.0)
    schedule.succeeded(0.0, 60.0)
    delays = [schedule.failed(100.0) - 100.0 for _ in range(6)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    schedule.succeeded(200.0, 60.0)  # a success starts the backoff over
    assert schedule.failed(300.0) == 305.0


def test_before_any_set_is_loaded_retries_come_every_few_seconds() -> None:
    schedule = RefreshSchedule()
    delays = [schedule.failed(0.0) for _ in range(200)]
    assert delays[:4] == [1.0, 2.0, 4.0, 5.0] and max(delays) == 5.0


def test_an_unknown_kid_refresh_that_finds_nothing_closes_the_door_for_30_s() -> None:
    schedule = RefreshSchedule()
    assert schedule.may_refresh_unknown(0.0)
    schedule.unknown_refreshed(started=10.0, found=False)
    assert not schedule.may_refresh_unknown(10.1)
    assert not schedule.may_refresh_unknown(39.9)
    assert schedule.may_refresh_unknown(40.0)


def test_an_unknown_kid_refresh_that_finds_its_key_leaves_the_door_open() -> None:
    schedule = RefreshSchedule()
    schedule.unknown_refreshed(started=10.0, found=True)
    assert schedule.may_refresh_unknown(10.1)


# The key source, with an in-memory fetch.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """What the fetch returns, released by the test; counts the fetches."""

    def __init__(self) -> None:
        self.answer: Fetched | Exception = FetchFailed("nothing served yet")
        self.calls = 0
        self.gate: asyncio.Event | None = None

    def serve(self, *entries: dict[str, Any], cache_control: str = "") -> None:
        self.answer = Fetched(document(*entries), cache_control)

    async def fetch(self) -> Fetched:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def config() -> JwtConfig:
    return JwtConfig(
        access_secret="s" * 40,
        refresh_secret="s" * 40,
        issuer="tickettoken-api",
        access_ttl_s=60,
        refresh_ttl_s=60,
        leeway_s=0,
        cache_size=10,
        algorithms=("HS256", "RS256", "ES256", "EdDSA"),
        jwks_url="http://127.0.0.1:9/jwks.json",
    )


def run(test: Callable[[JwksKeys, Endpoint, Clock, list[str]], Awaitable[None]]) -> None:
    """Runs ``test`` with a started key source (whose first fetch the test releases)."""

    async def main() -> None:
        clock, endpoint, removed = Clock(), Endpoint(), list[str]()
        endpoint.gate = asyncio.Event()
        static = [secret_key(b"s" * 40, ["HS256"])]
        jwks = JwksKeys(
            config(),
            [key for key in static if key is not None],
            on_removed=lambda: removed.append("removed"),
            clock=clock,
            rng=lambda: 0.0,
            fetch=endpoint.fetch,
        )
        jwks.start()
        try:
            await test(jwks, endpoint, clock, removed)
        finally:
            await jwks.close()

    asyncio.run(main())


async def settle(jwks: JwksKeys) -> None:
    """Lets the refresh in flight (already released) finish."""
    for _ in range(100):
        if jwks.inflight is None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the refresh did not finish")


async def first_load(jwks: JwksKeys, endpoint: Endpoint, *entries: dict[str, Any]) -> None:
    endpoint.serve(*entries)
    assert endpoint.gate is not None
    endpoint.gate.set()
    await settle(jwks)


def test_keys_stay_none_until_the_jwks_loads_even_with_a_static_secret() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        assert jwks.keys is None
        assert jwks.problem() == "JWKS not loaded yet: first fetch in progress"
        endpoint.answer = FetchFailed("HTTP status 500 (200 required; no redirects)")
        assert endpoint.gate is not None
        endpoint.gate.set()
        await settle(jwks)
        assert jwks.keys is None
        assert (
            jwks.problem()
            == "JWKS not loaded yet: fetch failed (HTTP status 500 (200 required; no redirects))"
        )
        assert jwks.schedule.next_due == clock.now + 1.0  # retried soon
        endpoint.serve(jwk(shared_rsa_key(), "a"), cache_control="max-age=120")
        jwks.refresh()
        await settle(jwks)
        assert jwks.keys is not None and jwks.problem() is None
        assert [key.kid for key in jwks.keys.keys] == [None, "a"]  # the secret, then the JWKS
        assert jwks.schedule.next_due == clock.now + 120.0

    run(test)


def test_a_failed_refresh_keeps_the_last_good_set() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, jwk(shared_rsa_key(), "a"))
        good = jwks.keys
        for failure in (FetchFailed("timeout"), ValueError("surprise")):
            endpoint.answer = failure
            jwks.refresh()
            await settle(jwks)
            assert jwks.keys is good and jwks.problem() is None
        endpoint.serve({"kty": "oct", "k": "c2VjcmV0"})  # nothing usable
        jwks.refresh()
        await settle(jwks)
        assert jwks.keys is good
        assert removed == []

    run(test)


def test_adding_a_key_keeps_cached_tokens_and_removing_one_drops_them() -> None:
    a, b = jwk(shared_rsa_key(), "a"), jwk(shared_ec_key(), "b")

    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, a)
        endpoint.serve(a, b)
        jwks.refresh()
        await settle(jwks)
        assert jwks.keys is not None and set(jwks.keys.by_kid) == {"a", "b"}
        assert removed == []
        endpoint.serve(b)
        jwks.refresh()
        await settle(jwks)
        assert set(jwks.keys.by_kid) == {"b"}
        assert removed == ["removed"]

    run(test)


def test_concurrent_unknown_kids_share_one_fetch() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, jwk(shared_rsa_key(), "a"))
        endpoint.gate = asyncio.Event()
        endpoint.serve(jwk(shared_rsa_key(), "a"), jwk(shared_ec_key(), "b"))
        waits = [jwks.refresh_unknown("b") for _ in range(20)]
        assert all(wait is not None for wait in waits)
        waiting = [asyncio.ensure_future(w) for w in waits if w is not None]
        waiting[0].cancel()  # one client going away does not cancel the others' fetch
        endpoint.gate.set()
        await asyncio.gather(*waiting[1:])
        assert endpoint.calls == 2 and jwks.keys is not None and "b" in jwks.keys.by_kid

    run(test)


def test_unknown_kids_that_find_nothing_refresh_at_most_once_per_30_s() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, jwk(shared_rsa_key(), "a"))
        wait = jwks.refresh_unknown("made-up")
        assert wait is not None
        await wait
        assert endpoint.calls == 2
        clock.now += 29.9
        assert jwks.refresh_unknown("made-up-too") is None
        clock.now += 0.1
        wait = jwks.refresh_unknown("made-up-again")
        assert wait is not None
        await wait
        assert endpoint.calls == 3

    run(test)


def test_an_unknown_kid_refresh_that_found_its_key_allows_the_next_one_at_once() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, jwk(shared_rsa_key(), "a"))
        endpoint.serve(jwk(shared_rsa_key(), "a"), jwk(shared_ec_key(), "b"))
        await_b = jwks.refresh_unknown("b")
        assert await_b is not None
        await await_b
        endpoint.serve(jwk(shared_ec_key(), "b"))  # then a removes
        wait = jwks.refresh_unknown("c")
        assert wait is not None
        await wait
        assert endpoint.calls == 3 and removed == ["removed"]

    run(test)


def test_a_failed_unknown_kid_refresh_closes_the_door_too() -> None:
    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, jwk(shared_rsa_key(), "a"))
        endpoint.answer = FetchFailed("timeout")
        wait = jwks.refresh_unknown("b")
        assert wait is not None
        await wait  # never raises: the verifier then answers 401
        assert jwks.refresh_unknown("b") is None

    run(test)


def test_each_junk_entry_is_logged_once_without_key_material(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaked = jwk(ec_key(), "leak", private=True)

    async def test(jwks: JwksKeys, endpoint: Endpoint, clock: Clock, removed: list[str]) -> None:
        await first_load(jwks, endpoint, leaked, jwk(shared_rsa_key(), "a"))
        for _ in range(3):
            jwks.refresh()
            await settle(jwks)

    with caplog.at_level(logging.INFO, logger="api_gateway.jwks"):
        run(test)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("private key" in message for message in messages) == 1
    assert sum("JWKS loaded: 1 keys (a)" in message for message in messages) == 1
    assert not any(leaked["d"] in message or leaked["x"] in message for message in messages)
