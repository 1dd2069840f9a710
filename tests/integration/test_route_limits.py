"""Limits that fit each route, as clients see them through real gateways: the purchase's limits
per address and per (user, event), /webhooks' own limit instead of the global one, a route with
``global: false``, header and path keys, one coherent header set on a 429, exempt probe paths,
and the purchase limits held by two gateways sharing one Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.bodies import purchase_body
from support.client import RawConnection, RawResponse, build_request
from support.gateway import PATIENT_REDIS, Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer
from support.tokens import mint

PURCHASE = "/api/v1/tickets/purchase"
JSON = ("Content-Type", "application/json")


class Client:
    """One keep-alive connection to a gateway."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.connection = RawConnection(gateway.port)

    def send(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        token: str | None = None,
    ) -> RawResponse:
        lines = list(headers) + ([("Authorization", f"Bearer {token}")] if token else [])
        self.connection.send(build_request(method, target, lines, body))
        return self.connection.read_response(method)

    def purchase(
        self, token: str, event: str | None, headers: Sequence[tuple[str, str]] = ()
    ) -> RawResponse:
        # A purchase the shipped schema accepts; the event named by a readable label, sent as the
        # UUID the schema wants (one label, one UUID).
        body = purchase_body(str(uuid.uuid5(uuid.NAMESPACE_URL, event or "-")))
        if event is None:
            document = json.loads(body)
            del document["eventId"]
            body = json.dumps(document).encode()
        return self.send("POST", PURCHASE, [JSON, *headers], body, token)

    def close(self) -> None:
        self.connection.close()


Opener = Callable[[GatewayProcess], Client]


@pytest.fixture
def client_of() -> Iterator[Opener]:
    opened: list[Client] = []

    def open_client(gateway: GatewayProcess) -> Client:
        opened.append(Client(gateway))
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def assert_one_header_set(refused: RawResponse, limit: str) -> None:
    """A 429 reports exactly the limit that refused it, once in each family, with Retry-After."""
    assert_problem(refused, 429)
    for name in ("ratelimit-limit", "x-ratelimit-limit", "ratelimit-remaining", "retry-after"):
        assert len(refused.header_values(name)) == 1, name
    assert refused.header("ratelimit-limit") == refused.header("x-ratelimit-limit") == limit
    assert refused.header("ratelimit-remaining") == "0"
    assert int(refused.header("retry-after") or 0) >= 1


def test_seven_accounts_from_one_address_meet_the_purchase_address_limit(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    env = {"TRUSTED_PROXIES": "127.0.0.1/32"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        client = client_of(gateway)
        # Three purchases each (four for the first three accounts), all under the per-user
        # limit of 5: 24 from one address, so a request that a slow machine lets the bucket
        # refill for (one every 3 s) cannot hide the refusals.
        answers = [
            client.purchase(mint(sub=f"account-{n}"), f"event-{n}-{i}")
            for i in range(4)
            for n in range(7)
            if i < 3 or n < 3
        ]
        elsewhere = client.purchase(
            mint(sub="account-7"), "event-7", [("X-Forwarded-For", "203.0.113.9")]
        )

    assert len(answers) == 24
    assert [a.status for a in answers[:20]] == [200] * 20
    refused = [a for a in answers[20:] if a.status == 429]
    assert refused, [a.status for a in answers[20:]]
    assert_one_header_set(refused[0], "20")
    assert elsewhere.status == 200


def test_a_third_purchase_for_one_event_is_refused_and_another_event_passes(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    buyer, other = (mint(sub=f"buyer-event-{n}") for n in range(2))
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        client = client_of(gateway)
        service_fleet["ticket"].reset()
        first, second, third = (client.purchase(buyer, "e-1") for _ in range(3))
        another_event = client.purchase(buyer, "e-2")
        another_buyer = client.purchase(other, "e-1")
        forwarded = len(service_fleet["ticket"].requests)

    assert (first.status, second.status) == (200, 200)
    assert first.header("ratelimit-limit") == "2" and first.header("ratelimit-remaining") == "1"
    assert_one_header_set(third, "2")
    assert another_event.status == 200
    assert another_buyer.status == 200
    assert forwarded == 4  # the refused purchase never reached the ticket service


def test_a_purchase_without_an_event_never_reaches_the_service_or_a_limit(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    """The purchase schema requires ``eventId``: such a purchase is refused before the limits
    (which would not count it per event) and the service."""
    buyer = mint(sub="buyer-no-event")
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        client = client_of(gateway)
        service_fleet["ticket"].reset()
        answers = [client.purchase(buyer, None) for _ in range(6)]
        forwarded = len(service_fleet["ticket"].requests)

    assert {a.status for a in answers} == {400}
    assert forwarded == 0


def test_webhooks_pass_the_global_limit_and_meet_their_own(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    env = {"RATE_LIMIT_MAX": "100"}
    body = b'{"type": "payment_intent.succeeded"}'
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        client = client_of(gateway)
        answers = [client.send("POST", "/api/v1/webhooks/stripe", [JSON], body) for _ in range(110)]
        through_payments = [
            client.send("POST", "/api/v1/payments/webhooks/stripe", [JSON], body) for _ in range(10)
        ]
        browsing = [client.send("GET", "/api/v1/search/q").status for _ in range(101)]

    assert [a.status for a in answers] == [200] * 110
    assert answers[-1].header_values("ratelimit-limit") == ["1000"]
    # 110 counted, less what refilled meanwhile (1,000 a minute: about 17 a second).
    assert 890 <= int(answers[-1].header("ratelimit-remaining") or 0) <= 920
    # Stripe's path under /payments: the same limit and the same budget, no global limit.
    assert [a.status for a in through_payments] == [200] * 10
    assert through_payments[-1].header_values("ratelimit-limit") == ["1000"]
    assert int(through_payments[-1].header("ratelimit-remaining") or 0) <= 880 + 30
    assert browsing[-1] == 429  # the global limit still holds everywhere else


def test_the_webhooks_limit_refuses_past_its_own_rate(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    config = {"routes": {"/webhooks": {"limits": [{"max": 3, "window_ms": 60000, "key": "ip"}]}}}
    env = {"RATE_LIMIT_MAX": "1"}
    with running_gateway(tmp_path, service_fleet.urls(), config=config, env=env) as gateway:
        client = client_of(gateway)
        answers = [client.send("POST", "/api/v1/webhooks/stripe", [JSON], b"{}") for _ in range(4)]

    assert [a.status for a in answers[:3]] == [200] * 3
    assert_one_header_set(answers[3], "3")


MARKETPLACE = {
    "global": False,
    "limits": [{"name": "partner", "max": 2, "window_ms": 60000, "key": "header:X-Partner"}],
    "endpoints": [
        {
            "path": "/listings/{listingId}/offers",
            "methods": ["POST"],
            "limits": [
                {"name": "offers", "max": 1, "window_ms": 60000, "key": ["user", "path:listingId"]}
            ],
        }
    ],
}


def test_a_route_without_the_global_limit_with_header_and_path_keys(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    fan, other = mint(sub="fan-offers"), mint(sub="fan-offers-2")
    config = {"routes": {"/marketplace": MARKETPLACE}}
    env = {"RATE_LIMIT_MAX": "3"}
    with running_gateway(tmp_path, service_fleet.urls(), config=config, env=env) as gateway:
        client = client_of(gateway)

        def listing(path: str, headers: Sequence[tuple[str, str]] = ()) -> RawResponse:
            return client.send("GET", "/api/v1/marketplace" + path, headers, token=fan)

        def offer(listing_id: str, token: str = fan) -> RawResponse:
            path = f"/api/v1/marketplace/listings/{listing_id}/offers"
            return client.send("POST", path, [JSON], b"{}", token)

        unkeyed = [listing("/listings").status for _ in range(5)]
        partners = [listing("/listings", [("X-Partner", f"p-{n}")]).status for n in range(5)]
        acme = [listing("/listings", [("X-Partner", "acme")]) for _ in range(3)]
        offers = [offer("L1"), offer("L1"), offer("l1;x=1"), offer("L2"), offer("L1", other)]
        elsewhere = [client.send("GET", "/api/v1/search/q").status for _ in range(4)]

    assert unkeyed == [200] * 5  # no header: not counted, and no global limit on this route
    assert partners == [200] * 5
    assert [a.status for a in acme[:2]] == [200, 200]
    assert_one_header_set(acme[2], "2")
    assert offers[0].status == 200
    assert_one_header_set(offers[1], "1")
    assert offers[2].status == 429  # the same listing however the path is written
    assert (offers[3].status, offers[4].status) == (200, 200)
    assert elsewhere == [200, 200, 200, 429]


def test_probe_paths_of_services_pass_no_limit(
    service_fleet: Fleet, tmp_path: Path, client_of: Opener
) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), env={"RATE_LIMIT_MAX": "2"}) as gateway:
        client = client_of(gateway)
        probes = [client.send("GET", f"/api/v1/venues/{p}") for p in ["health", "metrics"] * 3]
        heads = [client.send("HEAD", "/api/v1/events/health").status for _ in range(3)]
        token = mint(sub="prober")
        other = [client.send("GET", "/api/v1/marketplace/x", token=token).status for _ in range(3)]
        private = [client.send("GET", "/api/v1/auth/health").status for _ in range(3)]
        # Not the public path, as Authenticate reads it: limited like any other request.
        variants = [
            client.send("GET", f"/api/v1/venues/{p}").status for p in ("HEALTH", "health;x")
        ]

    assert [p.status for p in probes] == [200] * 6
    assert all(p.header("ratelimit-limit") is None for p in probes)
    assert heads == [200] * 3
    assert other == [200, 200, 429]
    assert private == [429] * 3  # not public on /auth: limited (the address's budget is spent)
    assert variants == [429, 429]


def test_two_gateways_sharing_redis_hold_the_purchase_limits_together(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer, client_of: Opener
) -> None:
    env = {"REDIS_URL": f"{redis_server.url}/0"}
    buyer, other = mint(sub="buyer-shared"), mint(sub="buyer-shared-2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    urls = service_fleet.urls()
    with (
        running_gateway(tmp_path / "a", urls, config=PATIENT_REDIS, env=env) as first,
        running_gateway(tmp_path / "b", urls, config=PATIENT_REDIS, env=env) as second,
    ):
        one, two = client_of(first), client_of(second)
        event = [one.purchase(buyer, "e-1"), two.purchase(buyer, "e-1"), one.purchase(buyer, "e-1")]
        users = [
            (one if n % 2 else two).purchase(other, f"e-{n}") for n in range(6)
        ]  # per user 5/min, whichever gateway answers

    assert [a.status for a in event[:2]] == [200, 200]
    assert_one_header_set(event[2], "2")
    assert [a.status for a in users[:5]] == [200] * 5
    assert_one_header_set(users[5], "5")
