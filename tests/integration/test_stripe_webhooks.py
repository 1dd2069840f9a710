"""Verified Stripe webhooks through the real gateway: a delivery reaches payment-service (a real
upstream recording what it got) only with a valid Stripe-Signature, byte for byte; an event it
answered 2xx is answered again without it. Signatures made with Stripe's algorithm."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text
from support.stripe import OLD_SECRET, SECRET, stripe_signature, v1
from support.upstream import RecordedRequest, Reply

WEBHOOK = "/api/v1/webhooks/stripe"
PAYMENTS_WEBHOOK = "/api/v1/payments/webhooks/stripe"
LIMIT = 1_048_576  # the routes' body limit (server.max_body_bytes)
DUPLICATE = {"received": True, "duplicate": True}
TOLERANCE_S = 300


@pytest.fixture(scope="module")
def gateway_extra_env() -> dict[str, str]:
    # Rotation: the new secret and the one being rolled out, both valid.
    return {"STRIPE_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}"}


def event(odd: bytes = b"") -> bytes:
    """A fresh event, in bytes a re-serializing proxy would change (spacing, CRLF, escapes,
    padding; ``odd``: more, such as bytes that are not UTF-8)."""
    return (
        b'{"type":"charge.succeeded" ,  "id" : "evt_%s",\r\n'
        b'  "data":{"z":1,"a":[1.0, 1e3, -0.0],"s":"caf\\u00e9 \xc3\xa9%s"}}  \t\r\n  '
        % (uuid.uuid4().hex.encode(), odd)
    )


def deliver(
    gateway: GatewayProcess,
    body: bytes,
    signature: str | None = None,
    path: str = WEBHOOK,
    secrets: tuple[str, ...] = (SECRET,),
) -> RawResponse:
    header = stripe_signature(body, secrets) if signature is None else signature
    headers = [("Content-Type", "application/json"), ("Stripe-Signature", header)]
    return gateway.request("POST", path, headers=headers, body=body)


def received(services: Fleet) -> list[RecordedRequest]:
    return [r for r in services["payment"].requests if "webhooks" in r.target]


def test_a_signed_delivery_reaches_payment_service_byte_for_byte(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event(odd=b" \xff\xfe")
    signature = stripe_signature(body)

    response = deliver(gateway, body, signature)

    assert response.status == 200, response.body
    [delivered] = received(services)
    assert delivered.target == WEBHOOK
    assert delivered.body == body
    assert delivered.header_values("Stripe-Signature") == [signature]


def test_the_payments_webhook_path_is_verified_too(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event()

    forged = deliver(gateway, body, path=PAYMENTS_WEBHOOK, secrets=("whsec_forger",))
    assert_problem(forged, 400)
    assert received(services) == []

    assert deliver(gateway, body, path=PAYMENTS_WEBHOOK).status == 200
    assert [r.body for r in received(services)] == [body]


def test_a_chunked_delivery_is_verified_and_arrives_byte_for_byte(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event()
    pieces = [body[:10], body[10:11], body[11:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    headers = [("Stripe-Signature", stripe_signature(body)), ("Transfer-Encoding", "chunked")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", WEBHOOK, headers) + chunked)
        response = connection.read_response()

    assert response.status == 200
    assert [r.body for r in received(services)] == [body]


@pytest.mark.parametrize("signer", [SECRET, OLD_SECRET])
def test_during_a_rotation_either_secret_signs(
    gateway: GatewayProcess, services: Fleet, signer: str
) -> None:
    body = event()

    assert deliver(gateway, body, secrets=(signer,)).status == 200
    assert [r.body for r in received(services)] == [body]


def test_any_of_several_v1_entries_may_match(gateway: GatewayProcess, services: Fleet) -> None:
    body = event()
    t = stripe_signature(body).split(",")[0]

    header = f"{t},v1={'0' * 64},v1={v1(body, OLD_SECRET, int(t[2:]))},v0={'1' * 64}"

    assert deliver(gateway, body, header).status == 200
    assert len(received(services)) == 1


def now() -> int:
    return int(time.time())


BAD_SIGNATURES: dict[str, Any] = {
    "missing": None,
    "empty": lambda body: "",
    "no t": lambda body: f"v1={v1(body, SECRET, now())}",
    "t in the future": lambda body: stripe_signature(body, t=now() + TOLERANCE_S + 60),
    "t too old": lambda body: stripe_signature(body, t=now() - TOLERANCE_S - 60),
    "t not a number": lambda body: f"t=soon,v1={v1(body, SECRET, now())}",
    "unknown secret": lambda body: stripe_signature(body, ("whsec_forger",)),
    "every v1 forged": lambda body: f"t={now()},v1={'0' * 64},v1={'f' * 64}",
    "only v0": lambda body: f"t={now()},v0={v1(body, SECRET, now())}",
    "another body": lambda body: stripe_signature(body + b" "),
}


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_a_bad_signature_is_400_and_never_reaches_the_service(
    gateway: GatewayProcess, services: Fleet, case: str
) -> None:
    body = event()
    make = BAD_SIGNATURES[case]
    headers = [("Content-Type", "application/json")]
    if make is not None:
        headers.append(("Stripe-Signature", make(body)))

    response = gateway.request("POST", WEBHOOK, headers=headers, body=body)

    problem = assert_problem(response, 400)
    assert (
        problem["type"] == "https://docs.tickettoken.io/gateway/problems/invalid-webhook-signature"
    )
    assert "whsec" not in response.body.decode("latin-1")
    assert_nothing_reached(services)


def test_a_refused_delivery_leaves_the_connection_in_step(
    gateway: GatewayProcess, services: Fleet
) -> None:
    forged, good = event(), event()
    with RawConnection(gateway.port) as connection:
        for body, secret in ((forged, "whsec_forger"), (good, SECRET)):
            headers = [("Stripe-Signature", stripe_signature(body, (secret,)))]
            connection.send(build_request("POST", WEBHOOK, headers, body))
        first, second = connection.read_response(), connection.read_response()

    assert_problem(first, 400)
    assert second.status == 200
    assert [r.body for r in received(services)] == [good]


@pytest.mark.parametrize(
    "path", ["/api/v1/webhooks/Stripe/", "/api/v1/webhooks//stripe", "/api/v1/webhooks/stripe;x"]
)
def test_spellings_of_the_webhook_path_are_verified_too(
    gateway: GatewayProcess, services: Fleet, path: str
) -> None:
    response = deliver(gateway, event(), path=path, secrets=("whsec_forger",))

    assert_problem(response, 400)
    assert_nothing_reached(services)


def test_other_webhook_paths_are_forwarded_as_before(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.request("POST", "/api/v1/webhooks/other", body=b"{}")

    assert response.status == 200
    assert [r.target for r in received(services)] == ["/api/v1/webhooks/other"]


def test_a_declared_huge_body_is_413_before_it_is_read(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("Stripe-Signature", stripe_signature(b"x")), ("Content-Length", str(LIMIT + 1))]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", WEBHOOK, headers))  # the body is never sent
        response = connection.read_response()

    assert_problem(response, 413)
    assert_nothing_reached(services)


def test_a_chunked_huge_body_is_cut_off_at_the_limit(
    gateway: GatewayProcess, services: Fleet
) -> None:
    chunk = b"x" * 65536
    pieces = LIMIT // len(chunk) + 2  # past the limit, bounded
    headers = [("Stripe-Signature", stripe_signature(b"x")), ("Transfer-Encoding", "chunked")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", WEBHOOK, headers))
        for _ in range(pieces):
            if not connection.send_tolerant(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                break  # the gateway already answered and closed
        connection.send_tolerant(b"0\r\n\r\n")
        response = connection.read_response()

    assert_problem(response, 413)
    assert_nothing_reached(services)


def test_a_duplicate_event_is_answered_200_without_forwarding(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event()

    first = deliver(gateway, body)
    again = deliver(gateway, body)  # a fresh signature: Stripe signs every attempt anew
    via_payments = deliver(gateway, body, path=PAYMENTS_WEBHOOK)

    assert first.status == 200
    for duplicate in (again, via_payments):
        assert duplicate.status == 200
        assert duplicate.json() == DUPLICATE
    assert [r.body for r in received(services)] == [body]


def test_a_delivery_the_service_failed_reaches_it_again_on_retry(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event()
    services["payment"].respond(Reply(status=500, body=b'{"error":"database down"}'))
    failed = deliver(gateway, body)
    services["payment"].respond(Reply(status=200, body=b'{"received":true}'))

    retried = deliver(gateway, body)
    duplicate = deliver(gateway, body)

    assert failed.status == 500
    assert failed.body == b'{"error":"database down"}'
    assert retried.body == b'{"received":true}'
    assert duplicate.json() == DUPLICATE
    assert [r.body for r in received(services)] == [body, body]


def test_a_second_delivery_while_the_first_is_in_flight_gets_409(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = event()
    services["payment"].respond(Reply(status=200, delay_s=1.5))
    answers: list[RawResponse] = []
    first = threading.Thread(target=lambda: answers.append(deliver(gateway, body)))
    first.start()
    for _ in range(100):  # until the first has reached the service (5 s at most)
        if received(services):
            break
        threading.Event().wait(0.05)

    concurrent = deliver(gateway, body)
    first.join(10)

    assert concurrent.status == 409
    assert concurrent.json() == {"received": False, "in_flight": True}
    assert [a.status for a in answers] == [200]
    assert deliver(gateway, body).json() == DUPLICATE
    assert len(received(services)) == 1


def test_the_outcomes_are_counted_in_metrics(gateway: GatewayProcess, services: Fleet) -> None:
    before = outcomes(gateway)
    body = event()
    deliver(gateway, body)
    deliver(gateway, body)
    deliver(gateway, body, secrets=("whsec_forger",))

    after = outcomes(gateway)

    assert after["verified"] - before["verified"] == 2
    assert after["duplicate"] - before["duplicate"] == 1
    assert after["rejected"] - before["rejected"] == 1


def test_the_secrets_never_appear_in_the_gateways_output(gateway: GatewayProcess) -> None:
    deliver(gateway, event(), secrets=("whsec_forger",))
    output = gateway.output()

    assert '"status":400' in output and WEBHOOK in output  # the access log saw the refusal
    assert SECRET not in output
    assert OLD_SECRET not in output


def outcomes(gateway: GatewayProcess) -> dict[str, int]:
    found = {}
    for line in metrics_text(gateway).splitlines():
        if line.startswith("gateway_stripe_webhooks_total{"):
            label = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[label] = int(float(line.split()[-1]))
    assert set(found) == {"verified", "rejected", "duplicate", "in_flight", "unchecked"}, found
    return found


def test_without_a_secret_webhooks_are_forwarded_with_one_warning(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    service_fleet.reset()
    body = event()
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        forged = deliver(gateway, body, secrets=("whsec_forger",))
        unsigned = gateway.request("POST", "/api/v1/webhooks/stripe", body=body)
        output = gateway.output()

    assert (forged.status, unsigned.status) == (200, 200)
    assert [r.body for r in received(service_fleet)] == [body, body]
    assert output.count("Stripe webhooks are not verified at the edge") == 1
