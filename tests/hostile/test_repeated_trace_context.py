"""W3C trace context sent in several lines, with tracing on (a real OTLP/HTTP receiver).

``tracestate`` is a list: its lines combine, in order, and all of it travels on. Two
``traceparent`` lines are an invalid traceparent: the gateway starts a new trace (dropping the
client's ``tracestate`` with it) rather than continuing whichever line it happened to read.
"""

from __future__ import annotations

import re

import pytest
from support.client import RawConnection, RawResponse, build_request
from support.collector import Collector, dumps
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

TOKEN = mint(sub="trace-context")
TARGET = "/api/v1/tickets/1"
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "7cf92f3577b34da6a3ce929d0e0e4737"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def send(gateway: GatewayProcess, request_id: str, lines: list[tuple[str, str]]) -> RawResponse:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("X-Request-Id", request_id), *lines]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", TARGET, headers))
        return connection.read_response()


@pytest.mark.parametrize(
    "parents",
    [(TRACE_A, TRACE_B), (TRACE_A, TRACE_A)],
    ids=["two-traces", "same-line-twice"],
)
def test_two_traceparent_lines_start_a_new_trace(
    traced: GatewayProcess, services: Fleet, collector: Collector, parents: tuple[str, str]
) -> None:
    request_id = f"two-parents-{parents[1][:4]}"
    lines = [
        ("traceparent", f"00-{parents[0]}-{CLIENT_SPAN}-01"),
        ("tracestate", "client=one"),
        ("traceparent", f"00-{parents[1]}-{CLIENT_SPAN}-01"),
    ]

    assert send(traced, request_id, lines).status == 200

    [server] = collector.wait_for(1, **{"gateway.request_id": request_id})
    assert server.trace_id not in parents and server.parent_span_id == "", dumps([server])
    upstream = services["ticket"].only_request()
    sent = TRACEPARENT.fullmatch(upstream.header("traceparent") or "")
    assert sent is not None and sent.group(1) == server.trace_id
    assert upstream.header_values("traceparent") == [sent.group(0)]
    assert upstream.header_values("tracestate") == []  # the client's went with its trace


def test_tracestate_lines_combine_into_one_list(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    lines = [
        ("tracestate", "first=1,second=2"),
        ("traceparent", f"00-{TRACE_B}-{CLIENT_SPAN}-01"),
        ("tracestate", "third=3"),
    ]

    assert send(traced, "split-state", lines).status == 200

    [server] = collector.wait_for(1, **{"gateway.request_id": "split-state"})
    assert (server.trace_id, server.parent_span_id) == (TRACE_B, CLIENT_SPAN)
    upstream = services["ticket"].only_request()
    assert upstream.header_values("tracestate") == ["first=1,second=2,third=3"]


def test_trace_fields_count_in_any_case_and_each_head_on_a_connection_has_its_own(
    traced: GatewayProcess, services: Fleet, collector: Collector
) -> None:
    """The reader notes a head's trace fields as it parses it, whatever their names' case: a
    ``tracestate`` alone still makes the client's fields replaced, not passed on beside ours;
    and the next head on the same connection, without them, starts a trace of its own."""
    heads = [
        ("caps-1", [("TraceParent", f"00-{TRACE_A}-{CLIENT_SPAN}-01"), ("TRACESTATE", "k=1")]),
        ("caps-2", [("Tracestate", "lonely=1")]),
        ("caps-3", []),
    ]
    with RawConnection(traced.port) as connection:
        for request_id, lines in heads:
            headers = [("Authorization", f"Bearer {TOKEN}"), ("X-Request-Id", request_id), *lines]
            connection.send(build_request("GET", TARGET, headers))
            assert connection.read_response().status == 200

    upstream = services["ticket"].requests
    assert [r.header("x-request-id") for r in upstream] == ["caps-1", "caps-2", "caps-3"]
    traces = []
    for request in upstream:
        [line] = request.header_values("traceparent")
        sent = TRACEPARENT.fullmatch(line)
        assert sent is not None, line
        traces.append(sent.group(1))
    assert traces[0] == TRACE_A and upstream[0].header_values("tracestate") == ["k=1"]
    assert len({*traces}) == 3
    assert upstream[1].header_values("tracestate") == []  # replaced, with the client's trace
    assert upstream[2].header_values("tracestate") == []
    [server] = collector.wait_for(1, **{"gateway.request_id": "caps-1"})
    assert (server.trace_id, server.parent_span_id) == (TRACE_A, CLIENT_SPAN)
