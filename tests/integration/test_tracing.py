"""OpenTelemetry tracing: W3C trace context in, a server span and a client span per attempt out
to a real OTLP/HTTP collector stand-in, and the gateway's span as the upstream's parent."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path

import pytest
from support.collector import Collector, Span, dumps
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import Reply

from integration.test_access_log import access_lines

TOKEN = mint()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3
# The flags: bit 0 is "sampled" (bit 1, "random trace id", is set on traces the SDK starts).
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def sampled(match: re.Match[str]) -> bool:
    return bool(int(match.group(3), 16) & 1)


QUIET_S = 1.0


def client_spans(collector: Collector, trace_id: str, count: int) -> list[Span]:
    """At least ``count`` client spans of the trace, or those there are after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        with collector.lock:
            clients = [s for s in collector.spans if s.kind == CLIENT and s.trace_id == trace_id]
        if len(clients) >= count or time.monotonic() > deadline:
            return clients
        time.sleep(0.05)


def test_a_client_trace_continues_through_the_gateway_to_the_service(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    headers = [
        ("traceparent", f"00-{TRACE_ID}-{CLIENT_SPAN}-01"),
        ("tracestate", "vendor=opaque"),
        ("X-Request-Id", "trace-1"),
    ]
    assert traced.get("/api/v1/tickets/1", token=TOKEN, headers=headers).status == 200

    upstream = services["ticket"].requests[-1]
    sent = TRACEPARENT.fullmatch(upstream.header("traceparent") or "")
    assert sent is not None and sent.group(1) == TRACE_ID and sampled(sent)
    assert upstream.header("tracestate") == "vendor=opaque"
    [server] = collector.wait_for(1, **{"gateway.request_id": "trace-1"})
    clients = [s for s in collector.wait_for(1) if s.kind == CLIENT and s.trace_id == TRACE_ID]
    assert len(clients) == 1, dumps(collector.spans)
    client = clients[0]
    assert (server.kind, server.trace_id, server.parent_span_id) == (SERVER, TRACE_ID, CLIENT_SPAN)
    assert server.name == "GET /api/v1/tickets" and server.service_name == "api-gateway"
    assert server.attributes["http.response.status_code"] == 200
    assert (client.parent_span_id, client.span_id) == (server.span_id, sent.group(2))
    assert client.attributes["gateway.service"] == "ticket"
    assert client.attributes["gateway.instance"] == services["ticket"].url.removeprefix("http://")
    assert client.attributes["gateway.attempt"] == 1


def test_each_attempt_has_its_own_client_span(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    services["event"].respond(Reply(status=503))
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    headers = [("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-01"), ("X-Request-Id", "trace-2")]
    assert traced.get("/api/v1/events/1", token=TOKEN, headers=headers).status == 503
    [server] = collector.wait_for(1, **{"gateway.request_id": "trace-2"})
    clients = client_spans(collector, trace_id, 2)
    assert sorted(s.attributes["gateway.attempt"] for s in clients) == [1, 2]
    assert {s.parent_span_id for s in clients} == {server.span_id}
    sent = {
        TRACEPARENT.fullmatch(r.header("traceparent") or "") for r in services["event"].requests
    }
    assert {m.group(2) for m in sent if m} == {s.span_id for s in clients}


def test_a_request_without_trace_context_starts_a_trace(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    response = traced.get("/api/v1/tickets/2", token=TOKEN, headers=[("X-Request-Id", "trace-3")])
    assert response.status == 200, services["ticket"].requests
    [server] = collector.wait_for(1, **{"gateway.request_id": "trace-3"})
    assert server.parent_span_id == "" and len(server.trace_id) == 32
    sent = TRACEPARENT.fullmatch(services["ticket"].requests[-1].header("traceparent") or "")
    assert sent is not None and sent.group(1) == server.trace_id


def test_an_unsampled_parent_is_not_exported_but_still_propagated(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4736"
    headers = [("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-00")]
    assert traced.get("/api/v1/tickets/3", token=TOKEN, headers=headers).status == 200
    sent = TRACEPARENT.fullmatch(services["ticket"].requests[-1].header("traceparent") or "")
    assert sent is not None and sent.group(1) == trace_id and not sampled(sent)
    time.sleep(QUIET_S)
    assert not [s for s in collector.spans if s.trace_id == trace_id]


def test_an_error_answer_and_its_attempts_are_error_spans(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    services["event"].respond(Reply(status=503))
    trace_id = "8bf92f3577b34da6a3ce929d0e0e4736"
    headers = [("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-01"), ("X-Request-Id", "trace-5xx")]
    assert traced.get("/api/v1/events/2", token=TOKEN, headers=headers).status == 503
    [server] = collector.wait_for(1, **{"gateway.request_id": "trace-5xx"})
    assert server.status_code == 2 and server.attributes["http.response.status_code"] == 503
    clients = client_spans(collector, trace_id, 2)
    assert len(clients) == 2 and all(s.status_code == 2 for s in clients), dumps(clients)


def test_at_ratio_0_a_new_trace_is_propagated_and_a_sampled_client_still_decides(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    """Not sampled: a trace id and a ``traceparent`` (flags 02: random id, not sampled), no
    span. A client's sampled trace is recorded whatever the ratio; queued spans (a 60 s batch
    delay) go out when the gateway stops, with the configured headers, compressed."""
    collector = Collector().start()
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url + "/custom/traces",
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=secret%20value",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_SERVICE_NAME": "edge",
    }
    trace_id = "9bf92f3577b34da6a3ce929d0e0e4736"
    try:
        with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
            response = gateway.get("/api/v1/tickets/1", token=TOKEN)
            assert response.status == 200
            ticket = service_fleet["ticket"]
            fresh = TRACEPARENT.fullmatch(ticket.requests[-1].header("traceparent") or "")
            assert fresh is not None and fresh.group(3) == "02", fresh
            parent = [("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-01")]
            assert gateway.get("/api/v1/tickets/1", token=TOKEN, headers=parent).status == 200
            sent = TRACEPARENT.fullmatch(ticket.requests[-1].header("traceparent") or "")
            assert sent is not None and (sent.group(1), sent.group(3)) == (trace_id, "01")
            # An aggregate's calls, not sampled: each passes on the request's one new trace.
            names = answer_event_details(service_fleet)
            aggregate = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)
            assert aggregate.status == 200, aggregate.body
            fanned = fanned_out(service_fleet, names)
            assert len({m.group(1) for m in fanned}) == 1 and fanned[0].group(1) != trace_id
            assert {m.group(3) for m in fanned} == {"02"}
            assert collector.spans == []  # still queued
        spans = collector.wait_for(2)
        assert {s.trace_id for s in spans} == {trace_id}, dumps(spans)
        assert {s.service_name for s in spans} == {"edge"}
        assert collector.posts == ["/custom/traces"]
        [headers] = collector.headers
        assert headers["x-collector-key"] == "secret value"
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "application/x-protobuf"
        assert "secret value" not in gateway.output()
    finally:
        service_fleet.reset()
        collector.stop()


def test_unsampled_requests_on_one_connection_each_send_their_own_trace_as_logged(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    """Three draws' worth of new traces (64 each) and more, from 40 users on one keep-alive
    connection: every upstream request carries exactly one ``traceparent``, its own trace id
    (none reused across draws), flags 02, and the request's access log line names that same
    trace id."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # nothing is sampled: never posted
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "RATE_LIMIT_MAX": "100000",
    }
    requests = 3 * 64 + 5
    try:
        with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
            connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            for n in range(requests):
                token = mint(sub=f"user-{n % 40}")
                connection.request(
                    "GET", f"/api/v1/tickets/{n}", headers={"Authorization": f"Bearer {token}"}
                )
                response = connection.getresponse()
                response.read()
                assert response.status == 200
            connection.close()
            sent: dict[str, str] = {}
            for request in service_fleet["ticket"].requests:
                [line] = request.header_values("traceparent")
                found = TRACEPARENT.fullmatch(line)
                assert found is not None and found.group(3) == "02", line
                sent[request.header("x-request-id") or ""] = found.group(1)
            assert len(sent) == requests
            assert len(set(sent.values())) == requests  # every trace its own
            deadline = time.monotonic() + 10
            while True:
                logged = {
                    line["request_id"]: line.get("trace_id")
                    for line in access_lines(gateway)
                    if line["request_id"] in sent
                }
                if len(logged) == requests or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert logged == sent
    finally:
        service_fleet.reset()


def test_without_an_endpoint_nothing_is_traced_and_trace_headers_pass_unchanged(
    gateway: GatewayProcess, services: Fleet
) -> None:
    traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
    headers = [("traceparent", traceparent), ("tracestate", "vendor=opaque")]
    assert gateway.get("/api/v1/tickets/1", token=TOKEN, headers=headers).status == 200
    upstream = services["ticket"].requests[-1]
    assert upstream.header_values("traceparent") == [traceparent]
    assert upstream.header_values("tracestate") == ["vendor=opaque"]


def test_a_bad_otlp_endpoint_is_a_readable_start_up_error(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}
    with (
        pytest.raises(AssertionError, match=r"observability\.otlp_endpoint: must be an http"),
        running_gateway(tmp_path, service_fleet.urls(), env=env),
    ):
        pass


def answer_event_details(fleet: Fleet) -> list[str]:
    """The event details aggregate's four services answering; their names."""
    documents = {
        "event": ("/api/v1/events/e1", {"id": "e1", "venueId": "v1", "name": "Concert"}),
        "venue": ("/api/v1/venues/v1", {"id": "v1", "tenantId": "tenant-1", "name": "Hall"}),
        "ticket": ("/api/v1/tickets/events/e1/availability", {"available": 1}),
        "marketplace": ("/api/v1/marketplace/listings", []),
    }
    for name, (path, document) in documents.items():
        fleet[name].respond(Reply(body=json.dumps(document).encode()), path=path)
    return list(documents)


def fanned_out(fleet: Fleet, names: list[str]) -> list[re.Match[str]]:
    """The ``traceparent`` of each service's call for the caller (its token: not a venue
    lookup of the gateway's own)."""
    found = []
    for name in names:
        call = [r for r in fleet[name].requests if r.header("authorization") is not None][-1]
        match = TRACEPARENT.fullmatch(call.header("traceparent") or "")
        assert match is not None, (name, call.headers)
        found.append(match)
    return found


def test_every_call_of_an_aggregate_is_a_client_span_of_the_request(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    trace_id = "7bf92f3577b34da6a3ce929d0e0e4736"
    names = answer_event_details(services)
    headers = [("traceparent", f"00-{trace_id}-{CLIENT_SPAN}-01")]
    try:
        response = traced.get("/api/v1/aggregate/events/e1", token=TOKEN, headers=headers)
        assert response.status == 200, response.body
        sent = fanned_out(services, names)
        assert {m.group(1) for m in sent} == {trace_id} and all(sampled(m) for m in sent)
        clients = client_spans(collector, trace_id, len(names))
        assert {c.span_id for c in clients} >= {m.group(2) for m in sent}, dumps(clients)
        [server] = [s for s in collector.wait_for(1) if s.kind == SERVER and s.trace_id == trace_id]
        assert {c.parent_span_id for c in clients} == {server.span_id}
    finally:
        services.reset()
