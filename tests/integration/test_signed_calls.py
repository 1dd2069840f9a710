"""Signed service calls against services that verify them as the platform's validator does:
proxied requests with and without bodies, retries, aggregates, health checks and the gateway's
own clients; and the gateway without a secret, or with one too short."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from support.client import RawConnection, build_request
from support.gateway import (
    SERVICE_NAMES,
    GatewayProcess,
    launch_gateway,
    run_until_exit,
    running_gateway,
)
from support.internal_auth import InternalAuthCheck, VerifyingUpstream
from support.resilience import service_config, upstream_service
from support.tokens import mint
from support.upstream import Reply

from api_gateway.config.settings import Instance
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.signing import Signer
from api_gateway.upstream.clients import AuthServiceClient, VenueServiceClient

SECRET = "internal-hmac-secret-for-the-tests-0123456789"
TOKEN = mint(sub="fan@1", tenant_id="tenant-a", role="customer")
HEALTH_INTERVAL_MS = 200
BUFFERED_BYTES = 64 * 1024
WAIT_S = 5.0


class SignedFleet:
    """Every service, each verifying what it is sent; one nonce store for all (the platform's
    Redis), so a nonce used on one instance is refused on any other."""

    def __init__(self, check: InternalAuthCheck) -> None:
        self.upstreams = {name: VerifyingUpstream(name, check) for name in SERVICE_NAMES}
        for upstream in self.upstreams.values():
            upstream.start()

    def urls(self) -> dict[str, str]:
        return {name: upstream.url for name, upstream in self.upstreams.items()}

    def stop(self) -> None:
        for upstream in self.upstreams.values():
            upstream.stop()


@pytest.fixture(scope="module")
def check() -> InternalAuthCheck:
    return InternalAuthCheck(SECRET)


@pytest.fixture(scope="module")
def fleet(check: InternalAuthCheck) -> Iterator[SignedFleet]:
    fleet = SignedFleet(check)
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def second_event(check: InternalAuthCheck) -> Iterator[VerifyingUpstream]:
    upstream = VerifyingUpstream("event-2", check)
    upstream.start()
    yield upstream
    upstream.stop()


CONFIG: dict[str, Any] = {
    "internal_auth": {"max_buffered_body_bytes": BUFFERED_BYTES},
    "services": {
        # Two instances, one failing: a GET is retried on the other.
        "event": {"health_check": {"interval_ms": HEALTH_INTERVAL_MS}},
    },
    "aggregates": {
        "event-card": {
            "path": "/event-cards/{eventId}",
            "auth": "optional",
            "sources": {
                "event": {"service": "event", "path": "/api/v1/events/{eventId}", "required": True}
            },
        }
    },
}


@pytest.fixture(scope="module")
def gateway(
    fleet: SignedFleet, second_event: VerifyingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    urls = fleet.urls() | {"event": f"{fleet.upstreams['event'].url},{second_event.url}"}
    env = {"INTERNAL_HMAC_SECRET": SECRET}
    with running_gateway(tmp_path_factory.mktemp("signed"), urls, CONFIG, env) as process:
        yield process


@pytest.fixture
def ticket(fleet: SignedFleet) -> VerifyingUpstream:
    upstream = fleet.upstreams["ticket"]
    upstream.reset()
    upstream.verdicts.clear()
    return upstream


def internal_headers(upstream: VerifyingUpstream) -> list[list[str]]:
    return [
        sorted(n for n in r.header_names() if n.startswith("x-internal-"))
        for r in upstream.requests
    ]


def test_a_proxied_get_with_a_query_is_accepted_by_the_service(
    gateway: GatewayProcess, ticket: VerifyingUpstream
) -> None:
    response = gateway.get("/api/v1/tickets/t1?expand=event&x=%20y", token=TOKEN)

    assert response.status == 200, response.body
    assert ticket.verdicts == [None]
    record = ticket.only_request()
    assert record.target == "/api/v1/tickets/t1?expand=event&x=%20y"
    assert record.header("x-internal-service") == "api-gateway"
    assert record.header("x-internal-body-hash") is None  # no body: "" signed, no header


def test_a_proxied_post_signs_the_hash_of_the_bytes_sent(
    gateway: GatewayProcess, ticket: VerifyingUpstream
) -> None:
    body = json.dumps({"eventId": "e1", "quantity": 2}, separators=(",", ":")).encode()
    response = gateway.request(
        "POST",
        "/api/v1/tickets/t1/hold",
        headers={"content-type": "application/json"},
        body=body,
        token=TOKEN,
    )

    assert response.status == 200, response.body
    assert ticket.verdicts == [None]
    record = ticket.only_request()
    assert record.body == body
    assert record.header("x-internal-body-hash") == hashlib.sha256(body).hexdigest()


def test_json_written_with_spaces_passes_the_services_check_unchanged(
    gateway: GatewayProcess, ticket: VerifyingUpstream
) -> None:
    body = b'{\n  "eventId": "e1",\n  "note": "caf\\u00e9",\n  "quantity": 2\n}'
    response = gateway.request(
        "POST",
        "/api/v1/tickets/t1/hold",
        headers={"content-type": "application/json"},
        body=body,
        token=TOKEN,
    )

    assert response.status == 200, response.body
    assert ticket.verdicts == [None]
    assert ticket.only_request().body == body  # forwarded byte for byte


def send_late_body(
    gateway: GatewayProcess, target: str, body: bytes, headers: list[tuple[str, str]]
) -> int:
    """A request whose body arrives well after its head: the gateway has it as a stream."""
    request = build_request("POST", target, [*headers, ("authorization", f"Bearer {TOKEN}")], body)
    head, _, rest = request.partition(b"\r\n\r\n")
    with RawConnection(gateway.port) as connection:
        connection.send(head + b"\r\n\r\n")
        time.sleep(0.2)
        connection.send(rest)
        return connection.read_response("POST").status


def test_a_body_arriving_after_its_head_is_read_whole_and_hashed(
    gateway: GatewayProcess, fleet: SignedFleet
) -> None:
    payment = fleet.upstreams["payment"]
    payment.reset()
    payment.verdicts.clear()
    body = json.dumps({"amount": 100, "note": "x" * 2000}, separators=(",", ":")).encode()

    status = send_late_body(
        gateway, "/api/v1/payments/intents", body, [("content-type", "application/json")]
    )

    assert status == 200
    assert payment.verdicts == [None]
    record = payment.only_request()
    assert record.body == body
    assert record.header("x-internal-body-hash") == hashlib.sha256(body).hexdigest()


def test_an_upload_beyond_the_bound_streams_signed_as_no_body(
    gateway: GatewayProcess, fleet: SignedFleet
) -> None:
    upload = fleet.upstreams["payment"]
    upload.reset()
    upload.verdicts.clear()
    body = b"--b\r\ncontent-disposition: form-data; name=f\r\n\r\n" + b"z" * BUFFERED_BYTES * 2
    body += b"\r\n--b--\r\n"

    status = send_late_body(
        gateway,
        "/api/v1/payments/documents",
        body,
        [("content-type", "multipart/form-data; boundary=b")],
    )

    assert status == 200
    assert upload.verdicts == [None]
    record = upload.only_request()
    assert record.body_length == len(body)
    assert record.header("x-internal-body-hash") is None


def test_client_sent_internal_headers_never_reach_the_service(
    gateway: GatewayProcess, ticket: VerifyingUpstream
) -> None:
    forged = {
        "x-internal-service": "payment-service",
        "x-internal-signature": "0" * 64,
        "x-internal-nonce": "forged-nonce-0123456789",
        "x-internal-timestamp": "1",
        "x-internal-body-hash": "f" * 64,
    }

    response = gateway.get("/api/v1/tickets/t1", headers=forged, token=TOKEN)

    assert response.status == 200, response.body
    assert ticket.verdicts == [None]
    record = ticket.only_request()
    for name, value in forged.items():
        assert value not in record.header_values(name)
    assert len(record.header_values("x-internal-signature")) == 1


def test_a_retry_is_signed_afresh(
    gateway: GatewayProcess, fleet: SignedFleet, second_event: VerifyingUpstream
) -> None:
    upstreams = [fleet.upstreams["event"], second_event]
    for upstream in upstreams:
        upstream.reset()
        upstream.verdicts.clear()
    # Only the proxied path fails: its health checks pass, so it stays in the balancer.
    upstreams[0].respond(Reply(status=503, body=b"{}"), path="/api/v1/events/e1")

    statuses = [gateway.get("/api/v1/events/e1", token=TOKEN).status for _ in range(4)]

    # Every request succeeds; those that met the failing instance first were retried on the
    # other with a nonce the shared store had not seen, or the service would have said 401.
    assert statuses == [200] * 4
    calls = [r for u in upstreams for r in u.requests if r.path == "/api/v1/events/e1"]
    assert len(calls) > 4
    nonces = [r.header("x-internal-nonce") for r in calls]
    assert len(set(nonces)) == len(nonces)
    upstreams[0].reset()
    upstreams[1].reset()


def test_an_aggregate_source_call_is_signed(
    gateway: GatewayProcess, fleet: SignedFleet, second_event: VerifyingUpstream
) -> None:
    upstreams = [fleet.upstreams["event"], second_event]
    for upstream in upstreams:
        upstream.reset()
        upstream.verdicts.clear()
        upstream.respond(Reply(body=b'{"id":"e7"}'), path="/api/v1/events/e7")

    response = gateway.get("/api/v1/aggregate/event-cards/e7", token=TOKEN)

    assert response.status == 200, response.body
    assert response.json()["data"] == {"event": {"id": "e7"}}
    calls = [r for u in upstreams for r in u.requests if r.path == "/api/v1/events/e7"]
    assert len(calls) == 1 and calls[0].header("x-internal-signature")
    assert all(v is None for u in upstreams for v in u.verdicts)


def test_health_checks_are_signed(gateway: GatewayProcess, fleet: SignedFleet) -> None:
    event = fleet.upstreams["event"]
    event.reset()
    event.verdicts.clear()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not event.verdicts:
        time.sleep(0.05)

    probes = [r for r in event.requests if r.path == "/health"]
    assert probes, "no health check arrived"
    assert all(r.header("user-agent") == "api-gateway-health" for r in probes)
    assert event.verdicts and all(verdict is None for verdict in event.verdicts)


def test_the_secret_is_never_logged(gateway: GatewayProcess) -> None:
    assert SECRET not in gateway.output()
    assert SECRET not in gateway.stderr()
    assert "INTERNAL_HMAC_SECRET is not set" not in gateway.output()


# --- the gateway's own clients ----------------------------------------------------------------


def test_the_auth_and_venue_clients_sign_their_calls(fleet: SignedFleet) -> None:
    def service(name: str) -> Any:
        host, _, port = fleet.upstreams[name].url.removeprefix("http://").partition(":")
        config = service_config(instances=1)
        svc = upstream_service(dataclasses.replace(config, instances=(Instance(host, int(port)),)))
        svc.signer = Signer(SECRET.encode())
        return svc

    for name in ("auth", "venue"):
        fleet.upstreams[name].reset()
        fleet.upstreams[name].verdicts.clear()
    fleet.upstreams["auth"].respond(Reply(body=b'{"id":"u1"}'), path="/api/v1/users/u1")
    fleet.upstreams["venue"].respond(Reply(body=b'{"id":"v1"}'), path="/api/v1/venues/v1")

    async def scenario() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings())
        try:
            clock = lambda: loop.time() * 1000  # noqa: E731
            user = await AuthServiceClient(service("auth"), pool, clock).get_user_by_id("u1")
            venue = await VenueServiceClient(service("venue"), pool, clock).get_venue("v1")
            return user, venue
        finally:
            pool.close()

    assert uvloop.run(scenario()) == ({"id": "u1"}, {"id": "v1"})
    assert fleet.upstreams["auth"].verdicts == [None]
    assert fleet.upstreams["venue"].verdicts == [None]


# --- without a secret, or with a bad one ------------------------------------------------------


def test_without_a_secret_nothing_is_signed_and_start_up_warns_once(
    fleet: SignedFleet, tmp_path: Path
) -> None:
    ticket = fleet.upstreams["ticket"]
    ticket.reset()
    ticket.verdicts.clear()
    with running_gateway(tmp_path, fleet.urls()) as gateway:
        gateway.get("/api/v1/tickets/t1", token=TOKEN)
        warnings = gateway.output().count("INTERNAL_HMAC_SECRET is not set")

    assert warnings == 1
    assert ticket.requests and not any(internal_headers(ticket))


@pytest.mark.parametrize("variable", ["INTERNAL_HMAC_SECRET", "INTERNAL_SERVICE_SECRET"])
def test_a_secret_too_short_refuses_start_up_naming_it(
    fleet: SignedFleet, tmp_path: Path, variable: str
) -> None:
    short = "short-secret-0123456789"
    gateway = launch_gateway(tmp_path, fleet.urls(), None, {variable: short})

    assert run_until_exit(gateway) not in (None, 0)
    output = gateway.stderr() + gateway.output()
    assert variable in output
    assert short not in output
