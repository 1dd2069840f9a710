"""JWKS key sets end to end: a real JWKS server on loopback, real RSA/EC/Ed25519 keys, the real
gateway process (and the fetcher alone against the same server for the framing cases).

Each test that changes what the JWKS serves gets its own gateway: a refresh for an unknown kid
that finds nothing closes the door for 30 s, which a shared gateway would carry between tests.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.jwks_server import JwksServer, loopback_certificate
from support.keypairs import (
    ec_key,
    jwk,
    rsa_key,
    shared_ec_key,
    shared_ed25519_key,
    shared_rsa_key,
    sign,
)
from support.tokens import mint

from api_gateway.jwks_fetch import Fetcher, FetchFailed

TARGET = "/api/v1/tickets/1"
TIMEOUT_MS = 500
CONFIG = {"jwt": {"jwks_timeout_ms": TIMEOUT_MS}}
LOAD_WAIT_S = 10.0  # the first fetch at start-up, or the retries (every <= 5 s) after it
POLL_S = 0.05
_serial = iter(range(10**9))


def env(server: JwksServer) -> dict[str, str]:
    return {"JWT_ALGORITHMS": "RS256,ES256,EdDSA", "JWT_JWKS_URL": server.url}


def token(key: Any, kid: str | None) -> str:
    """A token never sent before (its own ``sub``): it cannot come from the verified cache."""
    return sign(key, kid=kid, sub=f"user-{next(_serial)}")


def wait_for(gateway: GatewayProcess, bearer: str, status: int = 200) -> RawResponse:
    deadline = time.monotonic() + LOAD_WAIT_S
    while True:
        response = gateway.get(TARGET, token=bearer)
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(POLL_S)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def rsa_a() -> dict[str, Any]:
    return jwk(shared_rsa_key(), "rsa-a")


def start(tmp_path: Path, services: Fleet, jwks: JwksServer, **config: Any) -> Any:
    return running_gateway(tmp_path, services.urls(), {**CONFIG, **config}, env(jwks))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_rs256_es256_and_eddsa_tokens_are_accepted_and_junk_entries_skipped(
    tmp_path: Path, services: Fleet, jwks_server: JwksServer
) -> None:
    small, private, hmac = rsa_key(1024), ec_key(), "s" * 40
    jwks_server.serve(
        {"kty": "oct", "kid": "hmac", "k": "c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzcw"},
        jwk(small, "small"),
        jwk(private, "private", private=True),
        jwk(ec_key(), "encryption", use="enc"),
        {"kty": "RSA", "kid": "garbled", "n": "!!", "e": "AQAB"},
        jwk(shared_rsa_key(), "rsa"),
        jwk(shared_ec_key(), "ec"),
        jwk(shared_ed25519_key(), "ed"),
        cache_control="max-age=3600",
    )
    jwks_server.start()
    with start(tmp_path, services, jwks_server) as gateway:
        for key, kid in ((shared_rsa_key(), "rsa"), (shared_ec_key(), "ec")):
            assert wait_for(gateway, token(key, kid)).status == 200
        response = gateway.get(TARGET, token=token(shared_ed25519_key(), "ed"))
        assert response.status == 200, response.body
        assert services["ticket"].requests[-1].header("x-user-id")
        refused = [
            sign(small, kid="small"),
            sign(private, kid="private"),
            mint(secret=hmac, algorithm="HS256"),
        ]
        for bearer in refused:
            assert_problem(gateway.get(TARGET, token=bearer), 401)
        output = gateway.output()
    for kid in ("hmac", "small", "private", "encryption", "garbled"):
        assert output.count(f"(kid '{kid}') skipped") == 1, output[-3000:]
    assert "JWKS loaded: 3 keys (rsa, ec, ed)" in output
    assert jwk(private, None, private=True)["d"] not in output


def test_unreachable_at_start_up_means_503_until_the_jwks_comes_up(
    tmp_path: Path, services: Fleet, jwks_server: JwksServer, rsa_a: dict[str, Any]
) -> None:
    jwks_server.serve(rsa_a)  # served once started: not listening yet
    with start(tmp_path, services, jwks_server) as gateway:
        response = gateway.get(TARGET, token=token(shared_rsa_key(), "rsa-a"))
        assert_problem(response, 503)
        assert response.header("retry-after") == "5"
        ready = gateway.get("/ready")
        assert ready.status == 200  # reported, not required (readiness.require)
        assert "signing-keys" in ready.json()["failed"]
        assert ready.json()["checks"]["signing-keys"] == "failed"
        reason = gateway.admin_get("/ready").json()["checks"]["signing-keys"]
        assert reason.startswith("JWKS not loaded yet"), reason
        assert "127.0.0.1" not in reason and "jwks.json" not in reason
        jwks_server.start()
        assert wait_for(gateway, token(shared_rsa_key(), "rsa-a")).status == 200
        deadline = time.monotonic() + 3
        while gateway.get("/ready").json()["failed"] and time.monotonic() < deadline:
            time.sleep(POLL_S)  # /ready keeps a round of probes for 1 s
        assert gateway.get("/ready").json()["checks"]["signing-keys"] == "ok"


def test_rotation_adds_then_removes_a_key_without_a_restart(
    tmp_path: Path, services: Fleet, jwks_server: JwksServer, rsa_a: dict[str, Any]
) -> None:
    ec_b = jwk(shared_ec_key(), "ec-b")
    jwks_server.serve(rsa_a, cache_control="max-age=3600")
    jwks_server.start()
    with start(tmp_path, services, jwks_server) as gateway:
        cached_a = token(shared_rsa_key(), "rsa-a")
        assert wait_for(gateway, cached_a).status == 200
        # B is published beside A: the first token of B brings the new set in.
        jwks_server.serve(rsa_a, ec_b, cache_control="max-age=3600")
        assert gateway.get(TARGET, token=token(shared_ec_key(), "ec-b")).status == 200
        for _ in range(3):
            for bearer in (cached_a, token(shared_rsa_key(), "rsa-a")):
                assert gateway.get(TARGET, token=bearer).status == 200
            assert gateway.get(TARGET, token=token(shared_ec_key(), "ec-b")).status == 200
        # A is withdrawn; a token naming a kid not loaded makes the gateway look again.
        jwks_server.serve(ec_b, cache_control="max-age=3600")
        assert_problem(gateway.get(TARGET, token=token(ec_key(), "unknown")), 401)
        assert jwks_server.count() == 3
        for bearer in (cached_a, token(shared_rsa_key(), "rsa-a")):
            assert_problem(gateway.get(TARGET, token=bearer), 401)
        assert gateway.get(TARGET, token=token(shared_ec_key(), "ec-b")).status == 200


FAILURES = {
    "hangs": lambda server, body: server.hang(),
    "500": lambda server, body: server.serve_raw(body, status=500),
    "redirect": lambda server, body: server.serve_raw(
        b"", status=302, extra_headers=(("Location", "/elsewhere"),)
    ),
    "oversize": lambda server, body: server.serve_raw(body + b" " * 300_000),
    "oversize-chunked": lambda server, body: server.serve_raw(
        body + b" " * 300_000, framing="chunked"
    ),
    "invalid-json": lambda server, body: server.serve_raw(body[:-1]),
    "no-usable-key": lambda server, body: server.serve_raw(
        json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "ec-b"}]}).encode()
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_refresh_keeps_the_last_good_set(
    tmp_path: Path,
    services: Fleet,
    jwks_server: JwksServer,
    rsa_a: dict[str, Any],
    failure: str,
) -> None:
    jwks_server.serve(rsa_a)
    jwks_server.start()
    with start(tmp_path, services, jwks_server) as gateway:
        assert wait_for(gateway, token(shared_rsa_key(), "rsa-a")).status == 200
        new_set = json.dumps({"keys": [rsa_a, jwk(shared_ec_key(), "ec-b")]}).encode()
        FAILURES[failure](jwks_server, new_set)
        hits = jwks_server.count()
        began = time.monotonic()
        refused = gateway.get(TARGET, token=token(shared_ec_key(), "ec-b"))
        elapsed = time.monotonic() - began
        assert_problem(refused, 401)
        assert jwks_server.count() == hits + 1
        assert elapsed < TIMEOUT_MS / 1000 + 1.5, elapsed  # a hanging endpoint is cut off
        assert gateway.get(TARGET, token=token(shared_rsa_key(), "rsa-a")).status == 200
        assert gateway.get("/ready").json()["checks"]["signing-keys"] == "ok"
        jwks_server.unhang()
        output = gateway.output()
    assert "JWKS refresh failed" in output
    assert "keeping the last good set" in output


def test_concurrent_requests_naming_a_new_kid_cause_one_fetch(
    tmp_path: Path, services: Fleet, jwks_server: JwksServer, rsa_a: dict[str, Any]
) -> None:
    jwks_server.serve(rsa_a)
    jwks_server.start()
    with start(tmp_path, services, jwks_server) as gateway:
        assert wait_for(gateway, token(shared_rsa_key(), "rsa-a")).status == 200
        jwks_server.serve(rsa_a, jwk(shared_ec_key(), "ec-b"))
        jwks_server.answer.delay_s = 0.3  # the 20 requests arrive while the one fetch runs
        hits = jwks_server.count()
        tokens = [token(shared_ec_key(), "ec-b") for _ in range(20)]
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda t: gateway.get(TARGET, token=t).status, tokens))
        assert statuses == [200] * 20
        assert jwks_server.count() == hits + 1


def test_two_workers_each_load_and_refresh_the_set(
    tmp_path: Path, services: Fleet, jwks_server: JwksServer, rsa_a: dict[str, Any]
) -> None:
    jwks_server.serve(rsa_a, cache_control="max-age=3600")
    jwks_server.start()
    with start(tmp_path, services, jwks_server, server={"workers": 2}) as gateway:
        assert jwks_server.wait_for_hits(2) >= 2  # each worker fetched on its own
        for _ in range(20):  # fresh connections: both workers answer some
            assert wait_for(gateway, token(shared_rsa_key(), "rsa-a")).status == 200
        jwks_server.serve(rsa_a, jwk(shared_ed25519_key(), "ed-b"), cache_control="max-age=3600")
        hits = jwks_server.count()
        for _ in range(20):
            response = gateway.get(TARGET, token=token(shared_ed25519_key(), "ed-b"))
            assert response.status == 200, response.body
        assert 1 <= jwks_server.count() - hits <= 2


# The fetcher alone, against the same server.


def fetch(server: JwksServer, max_bytes: int = 262_144) -> Any:
    return asyncio.run(Fetcher(server.url, TIMEOUT_MS / 1000, max_bytes).fetch())


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_the_fetcher_reads_every_framing_and_cache_control(
    jwks_server: JwksServer, framing: str
) -> None:
    body = json.dumps({"keys": [jwk(shared_ec_key(), "ec")]}).encode()
    jwks_server.serve_raw(body, framing=framing, cache_control="public, max-age=120")
    jwks_server.start()
    fetched = fetch(jwks_server)
    assert fetched.body == body and fetched.cache_control == "public, max-age=120"
    assert jwks_server.paths == ["/.well-known/jwks.json"]


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_the_fetcher_refuses_a_document_over_the_cap(jwks_server: JwksServer, framing: str) -> None:
    jwks_server.serve_raw(b"x" * 5000, framing=framing)
    jwks_server.start()
    with pytest.raises(FetchFailed, match="over 4096 bytes"):
        fetch(jwks_server, max_bytes=4096)


def test_the_fetcher_gives_up_on_a_hanging_endpoint_in_time(jwks_server: JwksServer) -> None:
    jwks_server.hang()
    jwks_server.start()
    began = time.monotonic()
    with pytest.raises(FetchFailed, match="within 500 ms"):
        fetch(jwks_server)
    assert time.monotonic() - began < TIMEOUT_MS / 1000 + 1.0


def test_the_fetcher_reports_an_unreachable_endpoint(jwks_server: JwksServer) -> None:
    with pytest.raises(FetchFailed, match="connection failed"):
        fetch(jwks_server)  # never started: nothing listens on its port


def test_the_fetcher_speaks_https_and_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = loopback_certificate(tmp_path)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    body = json.dumps({"keys": [jwk(shared_ec_key(), "ec")]}).encode()
    with JwksServer(tls=served) as server:
        server.serve_raw(body)
        server.start()
        trusting = ssl.create_default_context(cafile=str(cert))
        fetcher = Fetcher(server.url, TIMEOUT_MS / 1000, 262_144, tls=trusting)
        assert asyncio.run(fetcher.fetch()).body == body
        # The system's CAs do not know this certificate: refused, not fetched.
        with pytest.raises(FetchFailed, match="TLS failed"):
            fetch(server)
