"""The span queue and its export thread: the SDK's settings, a bounded queue that drops and
counts, batches, retries of what a collector refuses for now. The POST is injected."""

from __future__ import annotations

import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from api_gateway.observability.otlp import Encoder
from api_gateway.observability.span_export import ExportSettings, SpanExport, parse_headers
from api_gateway.observability.spans import SERVER, Span, TraceContext

URL = "http://127.0.0.1:4318/v1/traces"
CONTEXT = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "", 3, "", False)
NEVER = 3600.0  # a batch delay no test waits for: what is sent, is sent by a full batch or close


def span(n: int) -> Span:
    return Span(SERVER, CONTEXT, f"{n + 1:016x}", "", False, "GET", 1, 2, (), (), False)


def span_ids(body: bytes) -> list[str]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [s.span_id.hex() for s in request.resource_spans[0].scope_spans[0].spans]


class Collector:
    """Answers each POST with the next status (the last one from then on)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[bytes] = []
        self.posted = threading.Event()

    def __call__(self, body: bytes) -> int:
        self.bodies.append(body)
        self.posted.set()
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def test_the_sdks_variables() -> None:
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",  # above the queue: the queue's size
        "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=a%20b, x-tenant = t1,broken",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-only=traces",  # wins over the general one
        "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
    }
    settings = ExportSettings.from_environment(URL, env)
    assert (settings.schedule_delay_s, settings.max_queue, settings.max_batch) == (0.25, 100, 100)
    assert settings.headers == (("x-only", "traces"),)
    assert (settings.timeout_s, settings.gzip) == (3.0, True)
    assert parse_headers(env["OTEL_EXPORTER_OTLP_HEADERS"]) == (
        ("api-key", "a b"),
        ("x-tenant", "t1"),
    )


def test_a_bad_or_missing_value_is_the_sdks_default() -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "soon", "OTEL_BSP_MAX_QUEUE_SIZE": "-1"}
    settings = ExportSettings.from_environment(URL, env)
    assert (settings.schedule_delay_s, settings.max_queue, settings.max_batch) == (5.0, 2048, 512)
    assert (settings.timeout_s, settings.gzip, settings.headers) == (10.0, False, ())


def test_a_full_queue_drops_and_counts_and_close_sends_the_rest() -> None:
    collector = Collector(200)
    settings = ExportSettings(URL, schedule_delay_s=NEVER, max_queue=3, max_batch=3)
    export = SpanExport(settings, Encoder([]), collector)
    export.queue.append(span(0))  # as if the thread were busy: the next three meet a full queue
    export.queue.append(span(1))
    export.queue.append(span(2))
    for n in range(3, 6):
        export.add(span(n))
    assert export.dropped == 3
    export.shutdown(10.0)
    assert [span_ids(body) for body in collector.bodies] == [[f"{n:016x}" for n in (1, 2, 3)]]


def test_a_full_batch_goes_at_once() -> None:
    collector = Collector(200)
    settings = ExportSettings(URL, schedule_delay_s=NEVER, max_queue=10, max_batch=2)
    export = SpanExport(settings, Encoder([]), collector)
    export.add(span(0))
    export.add(span(1))
    assert collector.posted.wait(10.0)
    export.shutdown(10.0)
    assert span_ids(collector.bodies[0]) == [f"{1:016x}", f"{2:016x}"]


def test_a_refusal_for_now_is_tried_again_and_a_final_one_is_not() -> None:
    for statuses, posts in (((503, 0, 429, 200), 4), ((400,), 1), ((503,), 4)):
        collector = Collector(*statuses)
        settings = ExportSettings(URL, schedule_delay_s=NEVER)
        export = SpanExport(settings, Encoder([]), collector, backoff_s=(0.0, 0.0, 0.0))
        export.queue.append(span(0))
        export._export(512)  # what the thread does when its delay is up (it waits: NEVER)
        assert len(collector.bodies) == posts, statuses
        export.shutdown(10.0)
        assert len(collector.bodies) == posts  # nothing left to send
