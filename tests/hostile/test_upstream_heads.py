"""Response heads from a broken or hostile service: oversized heads, endless interim responses
and trailers are cut off at the cap (502, nothing retried, the upstream connection ended); an
unsolicited 101 is a 502 sent once, with no traceback; interim responses are skipped; and the
fields services use among themselves never reach a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import IncompleteResponse, RawResponse, http_request
from support.gateway import GatewayProcess, running_gateway
from support.raw_upstream import QUIET_SERVICE, Piece, RawUpstream, Repeat
from support.tokens import mint

SERVICE = "marketplace"
PATH = "/api/v1/marketplace/answer"
NEXT = "/api/v1/marketplace/next"
WAIT_S = 5.0
KIB = 1024
OK_END = b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
ENDLESS = b"a" * 64 * KIB  # repeated 1,024 times: 64 MiB, more than any socket buffer holds


@pytest.fixture(scope="module")
def gateway(service_fleet: Any, raw: RawUpstream, module_dir: Path) -> Iterator[GatewayProcess]:
    urls = {**service_fleet.urls(), SERVICE: raw.url, "search": raw.url}
    with running_gateway(module_dir, urls, {"services": {SERVICE: QUIET_SERVICE}}) as process:
        yield process


def call(gateway: GatewayProcess, path: str = PATH, method: str = "GET") -> RawResponse:
    return http_request(gateway.port, method, path, token=mint())


def assert_next_request_served(gateway: GatewayProcess) -> None:
    response = call(gateway, NEXT)
    assert (response.status, response.body) == (200, b"ok")


def fields(count: int) -> bytes:
    return b"".join(b"X-Field-%d: value\r\n" % n for n in range(count))


# Each: what the upstream writes, and whether it never ends (the gateway must stop reading).
OVERSIZED: dict[str, tuple[tuple[Piece, ...], bool]] = {
    "one field of 1 MiB": (
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * KIB * KIB + b"\r\n" + OK_END,), False
    ),
    "a field that never ends": ((b"HTTP/1.1 200 OK\r\nX-Big: ", Repeat(ENDLESS, KIB)), True),
    "fields that never end": (
        (b"HTTP/1.1 200 OK\r\n", Repeat(b"X-Field: value\r\n", 4 * KIB * KIB)), True
    ),
    "101 fields": ((b"HTTP/1.1 200 OK\r\n" + fields(99) + OK_END,), False),
    "103 Early Hints without end": (
        (Repeat(b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n", KIB**2),),
        True,
    ),
    "a trailer of 1 MiB": (
        (CHUNKED_OK + b"X-T: ", Repeat(b"t" * 64 * KIB, 16), b"\r\n\r\n"), False
    ),
    "a trailer that never ends": ((CHUNKED_OK + b"X-T: ", Repeat(ENDLESS, KIB)), True),
    "trailers that never end": ((CHUNKED_OK, Repeat(b"X-T: value\r\n", 4 * KIB * KIB)), True),
    "a chunk extension that never ends": (
        (CHUNKED_OK[:-3] + b"1;ext=", Repeat(ENDLESS, KIB)), True
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_response_fields_past_the_cap_are_a_502_and_end_the_connection(
    gateway: GatewayProcess, upstream: RawUpstream, case: str
) -> None:
    pieces, endless = OVERSIZED[case]
    upstream.script(PATH, *pieces)

    try:
        response: RawResponse | None = call(gateway)
    except IncompleteResponse:
        response = None  # past the cap after the head went out: the body is cut short

    if response is not None:
        assert_problem(response, 502)
        assert "127.0.0.1" not in response.body.decode()
    [exchange] = upstream.requests_for(PATH)  # not retried
    assert upstream.wait_closed(exchange.connection, WAIT_S)
    if endless:
        assert upstream.fully_written == [False], "the gateway read it all"
    assert_next_request_served(gateway)


def test_fields_up_to_the_cap_pass(gateway: GatewayProcess, upstream: RawUpstream) -> None:
    upstream.script(PATH, b"HTTP/1.1 200 OK\r\n" + fields(98) + OK_END)  # 100 with the last two

    response = call(gateway)

    assert (response.status, response.body) == (200, b"ok")
    assert response.header("x-field-97") == "value"


SWITCHES = {
    "with Upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n\x81\x05hello",
    "without Upgrade": b"HTTP/1.1 101 Switching Protocols\r\n\r\nother protocol",
    "after a 100": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
}


@pytest.mark.parametrize("case", list(SWITCHES))
def test_an_unsolicited_101_is_a_502_sent_once(
    gateway: GatewayProcess, upstream: RawUpstream, case: str
) -> None:
    upstream.script(PATH, SWITCHES[case])

    response = call(gateway)

    assert_problem(response, 502)
    assert response.header("upgrade") is None
    [exchange] = upstream.requests_for(PATH)  # the GET reached the service: not sent again
    assert upstream.wait_closed(exchange.connection, WAIT_S)
    assert_next_request_served(gateway)
    log = gateway.stderr()
    assert "Traceback" not in log and "Fatal error" not in log


INTERIM = {
    "100 Continue": b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n",
    "103 Early Hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    "102, 103 and an unknown 199": b"HTTP/1.1 102 Processing\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nX-Interim: 1\r\n\r\n"
    b"HTTP/1.1 199 Whatever\r\nX-Interim: 2\r\n\r\n",
}


@pytest.mark.parametrize("case", list(INTERIM))
def test_interim_responses_are_skipped(
    gateway: GatewayProcess, upstream: RawUpstream, case: str
) -> None:
    upstream.script(PATH, INTERIM[case] + b"HTTP/1.1 200 OK\r\nX-Final: yes\r\n" + OK_END)

    response = call(gateway)

    assert (response.status, response.body) == (200, b"ok")
    assert response.header("x-final") == "yes"
    assert response.header("x-interim") is None and response.header("link") is None
    [exchange] = upstream.requests_for(PATH)
    assert exchange.connection not in upstream.closed  # a clean exchange: kept for reuse


def test_trailers_are_not_merged_into_the_head(
    gateway: GatewayProcess, upstream: RawUpstream
) -> None:
    upstream.script(
        PATH,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        b"Set-Cookie: session=attacker\r\nX-Trailer: 1\r\n\r\n",
    )

    response = call(gateway)

    assert (response.status, response.body) == (200, b"ok")
    assert response.header("set-cookie") is None and response.header("x-trailer") is None


INTERNAL_FIELDS = (
    b"X-Internal-Trace: node-7\r\nx-internal-db: primary\r\nX-Tenant-ID: tenant-2\r\n"
    b"X-User-ID: user-9\r\nX-User-Role: admin\r\nX-Admin-Token: s3cret\r\n"
    b"X-Gateway-Cache-Key: k\r\nServer: gunicorn/21.2\r\nX-Powered-By: Express\r\n"
)


def test_fields_services_use_among_themselves_do_not_reach_the_client(
    gateway: GatewayProcess, upstream: RawUpstream
) -> None:
    upstream.script(PATH, b"HTTP/1.1 200 OK\r\n" + INTERNAL_FIELDS + b"X-Custom: kept\r\n" + OK_END)

    response = call(gateway)

    assert (response.status, response.body) == (200, b"ok")
    names = {name.lower() for name, _ in response.headers}
    leaked = {n for n in names if n.startswith(("x-internal-", "x-user-", "x-gateway-"))}
    leaked |= names & {"x-tenant-id", "x-admin-token", "server", "x-powered-by"}
    assert not leaked
    assert response.header("x-custom") == "kept"
    # The gateway's own fields are not the service's: they are all there.
    assert response.header("x-request-id") and response.header("x-response-time")
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("x-ratelimit-limit") is not None


def test_the_dropped_fields_are_configurable(
    service_fleet: Any, upstream: RawUpstream, tmp_path: Path
) -> None:
    config = {
        "services": {SERVICE: QUIET_SERVICE},
        "response_headers": {"drop": ["x-secret-*", "X-Debug"]},
    }
    upstream.script(
        PATH,
        b"HTTP/1.1 200 OK\r\nX-Secret-A: 1\r\nx-debug: 2\r\nX-Tenant-ID: t\r\nServer: s\r\n"
        b"X-Powered-By: Express\r\n" + OK_END,
    )
    urls = {**service_fleet.urls(), SERVICE: upstream.url}

    with running_gateway(tmp_path, urls, config) as custom:
        response = call(custom)

    assert (response.status, response.body) == (200, b"ok")
    assert response.header("x-secret-a") is None and response.header("x-debug") is None
    assert response.header("x-powered-by") is None  # always dropped
    # The list replaces the default one.
    assert response.header("x-tenant-id") == "t" and response.header("server") == "s"


def test_a_cached_answer_has_no_internal_fields_and_keeps_the_gateways_own(
    gateway: GatewayProcess, upstream: RawUpstream
) -> None:
    path = "/api/v1/search/filtered"
    upstream.script(
        path, b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\n" + INTERNAL_FIELDS + OK_END
    )

    answers = [http_request(gateway.port, "GET", path) for _ in range(2)]

    assert [a.header("x-cache") for a in answers] == ["MISS", "HIT"]
    for answer in answers:
        assert (answer.status, answer.body) == (200, b"ok")
        assert answer.header("x-tenant-id") is None and answer.header("server") is None
        assert answer.header("x-internal-trace") is None and answer.header("x-user-role") is None
        assert answer.header("x-request-id") and answer.header("x-frame-options")
