"""The access log's line: the exact fields and order the platform's log pipeline reads."""

from __future__ import annotations

import asyncio
import io
import json

from api_gateway.observability.access import AccessLog
from api_gateway.types import Request, Response


def test_a_batch_is_one_json_line_per_request() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        log = AccessLog(loop, stream)
        request = Request("GET", b"/api/v1/tickets/1", [], b"", "10.0.0.7")
        request.request_id, request.path, request.route = (
            "req-1",
            "/api/v1/tickets/1",
            "/api/v1/tickets",
        )
        log.record(request, Response(200, []), "1.250")
        log.record(request, Response(404, []), "0.010")
        log.flush()
    finally:
        loop.close()
    lines = stream.getvalue().decode().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == [
        "time", "level", "msg", "request_id", "method", "path", "route", "status",
        "duration_ms", "client_ip",
    ]  # fmt: skip
    assert first["level"] == "info" and first["msg"] == "request"
    assert isinstance(first["time"], int)
    assert (first["request_id"], first["method"], first["client_ip"]) == (
        "req-1",
        "GET",
        "10.0.0.7",
    )
    assert (first["path"], first["route"]) == ("/api/v1/tickets/1", "/api/v1/tickets")
    assert (first["status"], first["duration_ms"]) == (200, 1.25)
    assert lines[1].endswith('"status":404,"duration_ms":0.010,"client_ip":"10.0.0.7"}')


def test_nothing_pending_writes_nothing() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        AccessLog(loop, stream).flush()
    finally:
        loop.close()
    assert stream.getvalue() == b""
