"""The hand-written OTLP encoder, decoded with opentelemetry-proto's generated classes; and the
spans ``Tracing`` records for a request, as the exporter thread posts them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from api_gateway.config.observability import ObservabilityConfig
from api_gateway.config.settings import Instance
from api_gateway.observability.otlp import Encoder, varint
from api_gateway.observability.spans import (
    BYTES_PER_TRACE,
    CLIENT,
    IDS_PER_DRAW,
    SERVER,
    Span,
    TraceContext,
    exception_record,
)
from api_gateway.observability.tracing import CLIENT_KEYS, SERVER_KEYS, Tracing
from api_gateway.types import Request, Response
from api_gateway.upstream.forward import render_head
from api_gateway.upstream.instances import UpstreamInstance

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVER_ID = "1111111111111111"
PARENT = "00f067aa0ba902b7"


def value(any_value: AnyValue) -> object:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


def attributes(pairs: list[KeyValue]) -> dict[str, object]:
    return {pair.key: value(pair.value) for pair in pairs}


def decode(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def test_varint() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 1 << 63)] == [
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    ]


def test_a_batch_decodes_field_by_field() -> None:
    context = TraceContext(TRACE, SERVER_ID, PARENT, 0x01, "vendor=opaque", True)
    server = Span(
        SERVER, context, SERVER_ID, PARENT, True, "GET /api/v1/tickets", 1_000, 2_000,
        ("http.route", "http.response.status_code", "gateway.request_id"),
        ("/api/v1/tickets", 200, "é" * 100), False,
    )  # fmt: skip
    client = Span(
        CLIENT, context, "2222222222222222", SERVER_ID, False, "GET ticket", 1_100, 1_900,
        ("server.port", "gateway.attempt", "big"), (8080, -1, 1 << 62), True,
    )  # fmt: skip
    encoder = Encoder([("service.name", "api-gateway"), ("deployment.environment", "test")])
    [resource_spans] = decode(encoder.encode([server, client])).resource_spans
    assert attributes(list(resource_spans.resource.attributes)) == {
        "service.name": "api-gateway",
        "deployment.environment": "test",
    }
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "api_gateway"
    first, second = scope_spans.spans
    assert (first.trace_id.hex(), first.span_id.hex(), first.parent_span_id.hex()) == (
        TRACE,
        SERVER_ID,
        PARENT,
    )
    assert (first.name, first.kind, first.trace_state) == (
        "GET /api/v1/tickets",
        ProtoSpan.SPAN_KIND_SERVER,
        "vendor=opaque",
    )
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (1_000, 2_000)
    assert attributes(list(first.attributes)) == {
        "http.route": "/api/v1/tickets",
        "http.response.status_code": 200,
        "gateway.request_id": "é" * 100,
    }
    assert first.attributes[1].value.WhichOneof("value") == "int_value"
    assert first.status.code == 0 and first.flags == 0x300  # has-is-remote, is-remote
    assert (second.kind, second.parent_span_id.hex(), second.flags) == (
        ProtoSpan.SPAN_KIND_CLIENT,
        SERVER_ID,
        0x100,
    )
    assert attributes(list(second.attributes)) == {
        "server.port": 8080,
        "gateway.attempt": -1,
        "big": 1 << 62,
    }
    assert second.status.code == 2 and not second.events  # error, no exception


def test_a_span_that_ended_in_an_exception_has_its_event() -> None:
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError as caught:
        error = caught
    context = TraceContext(TRACE, SERVER_ID, "", 0x03, "", False)
    record = exception_record(error)
    del error  # the record holds no frames: nothing else refers to the exception
    span = Span(SERVER, context, SERVER_ID, "", False, "GET", 5, 9, ("a",), ("b",), record)
    [decoded] = decode(Encoder([]).encode([span])).resource_spans[0].scope_spans[0].spans
    assert decoded.parent_span_id == b"" and decoded.trace_state == "" and decoded.flags == 0x100
    assert decoded.status.code == 2
    [event] = decoded.events
    found = attributes(list(event.attributes))
    assert (event.name, event.time_unix_nano) == ("exception", 9)
    assert found["exception.type"] == "ConnectionResetError"
    assert found["exception.message"] == "peer went away"
    assert "ConnectionResetError: peer went away" in str(found["exception.stacktrace"])
    assert found["exception.escaped"] == "False"


def first_of_draw(trace_id: int, span_id: int) -> int:
    """The random bits of a draw of new traces whose first is ``trace_id`` and ``span_id``
    (each trace's 8 unused bytes all ones, so that ids that stray into them show)."""
    first = trace_id << 128 | span_id << 64 | (1 << 64) - 1
    return first << (8 * BYTES_PER_TRACE * (IDS_PER_DRAW - 1))


def upstream_instance() -> UpstreamInstance:
    """A real one: compiled, the attempt hook's annotations are checked (COMPILED.md §9)."""
    return UpstreamInstance(Instance("127.0.0.1", 8081))


def test_tracing_records_and_exports_a_sampled_request() -> None:
    bodies: list[bytes] = []
    posted = threading.Event()

    def post(body: bytes) -> int:
        bodies.append(body)
        posted.set()
        return 200

    config = ObservabilityConfig(1.0, 1.0, "api-gateway", "http://127.0.0.1:4318/v1/traces")
    bits = iter([first_of_draw(0xAB << 64 | 5, 0x10), 0x20])
    tracing = Tracing(config, {"OTEL_BSP_SCHEDULE_DELAY": "60000"}, lambda n: next(bits), post)
    sent: list[list[tuple[bytes, bytes]]] = []

    async def answer() -> Response:
        return Response(200, [], b"{}")

    def send(
        request: Request, endpoint: UpstreamInstance, remaining_ms: float
    ) -> Awaitable[Response]:
        sent.append(list(request.headers))  # the head is rendered at once, as the pool's is
        return answer()

    async def upstream(request: Request) -> Response:
        request.route, request.attempts = "/api/v1/tickets", 1
        return await tracing.client_span(send, request, upstream_instance(), 1000.0, "ticket")

    async def scenario() -> None:
        request = Request("GET", b"/api/v1/tickets/1", [(b"traceparent", b"bad")], b"", "10.0.0.1")
        request.path, request.request_id = "/api/v1/tickets/1", "r-1"
        assert (await tracing.server_span(request, upstream)).status == 200
        assert request.trace_id == f"{0xAB << 64 | 5:032x}"
        assert request.headers == [(b"traceparent", b"bad")]  # the client's, restored
        await tracing.close()

    asyncio.run(scenario())
    assert posted.is_set() and len(bodies) == 1  # the batch, sent by close
    assert sent == [[(b"traceparent", f"00-{0xAB << 64 | 5:032x}-{0x20:016x}-03".encode())]]
    spans = decode(bodies[0]).resource_spans[0].scope_spans[0].spans
    client, server = spans  # each recorded as it ended
    assert (server.span_id.hex(), server.parent_span_id) == (f"{0x10:016x}", b"")
    assert (client.span_id.hex(), client.parent_span_id.hex()) == (f"{0x20:016x}", f"{0x10:016x}")
    assert server.name == "GET /api/v1/tickets" and client.name == "GET ticket"
    assert list(attributes(list(server.attributes))) == list(SERVER_KEYS)
    assert attributes(list(client.attributes)) == dict(
        zip(
            CLIENT_KEYS, ("GET", "127.0.0.1", 8081, "ticket", "127.0.0.1:8081", 1, 200), strict=True
        )
    )


def test_an_unsampled_request_adds_a_traceparent_for_the_head_and_records_nothing() -> None:
    bodies: list[bytes] = []

    def post(body: bytes) -> int:
        bodies.append(body)
        return 200

    config = ObservabilityConfig(1.0, 0.0, "api-gateway", "http://127.0.0.1:4318/v1/traces")
    trace_id = 0xCD << 64 | 7
    tracing = Tracing(config, {}, lambda n: first_of_draw(trace_id, 0x42), post)
    sent: list[bytes] = []
    client_headers = [(b"accept", b"*/*")]

    async def answer() -> Response:
        return Response(200, [], b"{}")

    def send(
        request: Request, endpoint: UpstreamInstance, remaining_ms: float
    ) -> Awaitable[Response]:
        sent.append(render_head(request, b"host: ticket:8080", 1000)[0])
        return answer()

    async def upstream(request: Request) -> Response:
        for attempt in (1, 2):
            request.attempts = attempt
            await tracing.client_span(send, request, upstream_instance(), 1000.0, "ticket")
        return Response(200, [], b"{}")

    async def scenario() -> None:
        request = Request("GET", b"/api/v1/tickets/1", client_headers, b"", "10.0.0.1")
        assert (await tracing.server_span(request, upstream)).status == 200
        assert request.trace_id == f"{trace_id:032x}"
        assert request.headers is client_headers and client_headers == [(b"accept", b"*/*")]
        await tracing.close()

    asyncio.run(scenario())
    # Each attempt's head carries the trace's line once, after the client's headers.
    line = f"traceparent: 00-{trace_id:032x}-{0x42:016x}-02\r\n".encode()
    assert [head.count(line) for head in sent] == [1, 1]
    assert all(b"accept: */*\r\n" + line in head for head in sent)
    assert bodies == []
