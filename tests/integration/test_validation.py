"""Requests that break a route's schema get 400 problem with every field's error and never reach
the service; JSON routes refuse bodies that are not JSON."""

from __future__ import annotations

from pathlib import Path

from support.assertions import assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint


def test_a_bad_search_is_refused_with_each_field_named(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/search/events?q=&limit=500&sort=cheapest&page=2")

    assert_problem(response, 400)
    document = response.json()
    assert document["type"].endswith("/validation-failed")
    assert {e["field"] for e in document["errors"]} == {"query.q", "query.limit", "query.sort"}
    assert document["request_id"] == response.header("x-request-id")
    assert services.total_requests() == 0


def test_a_good_search_goes_through_untouched(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get("/api/v1/search/events?q=jazz&limit=20&sort=date&order=asc&tag=x")

    assert response.status == 200
    assert services["search"].only_request().target == (
        "/api/v1/search/events?q=jazz&limit=20&sort=date&order=asc&tag=x"
    )


def test_a_ticket_body_must_be_json(gateway: GatewayProcess, services: Fleet) -> None:
    token = mint()
    broken = gateway.request("POST", "/api/v1/tickets/orders", body=b"{not json", token=token)
    form = gateway.request(
        "POST",
        "/api/v1/tickets/orders",
        body=b"a=1",
        token=token,
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
    )
    good = gateway.request(
        "POST",
        "/api/v1/tickets/orders",
        body=b'{"seats": 2}',
        token=token,
        headers=[("Content-Type", "application/json; charset=utf-8")],
    )

    assert_problem(broken, 400)
    assert broken.json()["errors"][0]["field"] == "body"
    assert_problem(form, 415)
    assert good.status == 200
    assert services["ticket"].only_request().body == b'{"seats": 2}'


def test_a_body_is_not_judged_before_the_caller_is_known(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.request("POST", "/api/v1/tickets/orders", body=b"{not json")

    assert_problem(response, 401)
    assert services.total_requests() == 0


def test_routes_without_a_schema_take_any_body(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.request("POST", "/api/v1/events/raw", body=b"\x00\xff", token=mint())

    assert response.status == 200
    assert services["event"].only_request().body == b"\x00\xff"


def test_a_json_body_over_its_own_bound_is_413_declared_or_chunked(
    services: Fleet, tmp_path: Path
) -> None:
    # The route takes large bodies; its JSON check takes at most 1 KiB.
    route = {"max_body_bytes": 1 << 20, "validation": {"json_body": True, "json_max_bytes": 1024}}
    body = b'{"note": "' + b"x" * 2000 + b'"}'
    chunked = [("Transfer-Encoding", "chunked"), ("Authorization", f"Bearer {mint()}")]
    with running_gateway(tmp_path, services.urls(), {"routes": {"/tickets": route}}) as gw:
        declared = gw.request("POST", "/api/v1/tickets/orders", body=body, token=mint())
        with RawConnection(gw.port) as connection:
            connection.send(build_request("POST", "/api/v1/tickets/orders", chunked))
            connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            streamed = connection.read_response()
        small = gw.request("POST", "/api/v1/tickets/orders", body=b"[1, 2]", token=mint())

    for response in (declared, streamed):
        assert_problem(response, 413)
        assert "1024 bytes" in response.json()["detail"]
    assert small.status == 200
    assert services["ticket"].only_request().body == b"[1, 2]"
