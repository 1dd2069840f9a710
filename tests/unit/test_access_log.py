"""The access log's line: the exact fields and order the platform's log pipeline reads."""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import cast

from api_gateway.observability.access import AccessLog
from api_gateway.types import Claims, Request, Response


def recorded(log: AccessLog, statuses: list[int]) -> list[dict[str, object]]:
    request = Request("GET", b"/api/v1/tickets/1", [], b"", "10.0.0.7")
    for status in statuses:
        log.record(request, Response(status, []), "1.000")
    log.flush()
    assert isinstance(log.stream, io.BytesIO)
    return [json.loads(line) for line in log.stream.getvalue().decode().splitlines()]


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
        "duration_ms", "client_ip", "upstream", "attempts", "tenant", "user", "cache", "limit",
        "bytes_in", "bytes_out", "user_agent",
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
    assert (first["upstream"], first["attempts"], first["tenant"], first["user"]) == ("", 0, "", "")
    assert (first["cache"], first["limit"]) == ("", "")
    assert '"status":404,"duration_ms":0.010,"client_ip":"10.0.0.7"' in lines[1]


def test_nothing_pending_writes_nothing() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        AccessLog(loop, stream).flush()
    finally:
        loop.close()
    assert stream.getvalue() == b""


def test_the_upstream_identity_cache_and_limit_outcome_are_logged() -> None:
    loop = asyncio.new_event_loop()
    try:
        log = AccessLog(loop, io.BytesIO())
        request = Request("GET", b"/api/v1/tickets/1", [], b"", "10.0.0.7")
        request.claims = Claims("user-1", "tenant-1", "admin", "a@example.com", 0.0)
        request.upstream, request.attempts, request.cache = "10.1.0.5:3004", 2, "MISS"
        request.limit_at = 0
        log.record(request, Response(200, []), "1.000")
        request.limit_at = -2
        log.record(request, Response(429, []), "1.000")
        log.flush()
        lines = [
            json.loads(line)
            for line in cast(io.BytesIO, log.stream).getvalue().decode().splitlines()
        ]
    finally:
        loop.close()
    assert lines[0]["upstream"] == "10.1.0.5:3004" and lines[0]["attempts"] == 2
    assert (lines[0]["tenant"], lines[0]["user"], lines[0]["cache"]) == (
        "tenant-1",
        "user-1",
        "MISS",
    )
    assert (lines[0]["limit"], lines[1]["limit"]) == ("allowed", "refused")
    assert "a@example.com" not in cast(io.BytesIO, log.stream).getvalue().decode()


def test_sampling_keeps_about_the_rate_and_every_server_error() -> None:
    loop = asyncio.new_event_loop()
    try:
        log = AccessLog(loop, io.BytesIO(), sample_rate=0.1, draw=random.Random(7))
        lines = recorded(log, [200] * 1000 + [503] * 20)
    finally:
        loop.close()
    ok = [line for line in lines if line["status"] == 200]
    assert 50 <= len(ok) <= 150
    assert sum(1 for line in lines if line["status"] == 503) == 20


def test_a_sample_rate_of_zero_logs_only_server_errors() -> None:
    loop = asyncio.new_event_loop()
    try:
        lines = recorded(AccessLog(loop, io.BytesIO(), sample_rate=0.0), [200, 404, 500])
    finally:
        loop.close()
    assert [line["status"] for line in lines] == [500]


def test_a_quote_in_the_path_cannot_write_fields_of_its_own() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        log = AccessLog(loop, stream)
        request = Request("GET", b"/x", [], b"", "10.0.0.7")
        request.path = '/api/v1/search/a","level":"fatal\\'
        log.record(request, Response(200, []), "1.000")
        log.flush()
    finally:
        loop.close()
    line = json.loads(stream.getvalue())
    assert line["level"] == "info"
    assert line["path"] == '/api/v1/search/a","level":"fatal\\'


HOSTILE_TEXTS = [
    'fe80::1%eth0"}{"tenant":"forged',
    "back\\slash",
    "nul\x00and\x1fcontrols\x7f",
    "line\nbreak\r",
    "non-ascii \u00e9\u2028",
    "lone surrogate \udc80",
]


def test_every_string_field_is_escaped_whatever_it_holds() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        log = AccessLog(loop, stream)
        for text in HOSTILE_TEXTS:
            request = Request("GET", b"/", [], b"", "10.0.0.7")
            request.user_agent = text.encode("utf-8", "surrogateescape")
            request.request_id = request.method = request.path = request.route = text
            request.client_ip = request.cache = request.upstream = text
            claims = request.claims = Claims("user-1", "tenant-1", "", "", 0.0)
            claims.user_id = claims.tenant_id = text
            log.record(request, Response(200, []), "1.000")
        log.flush()
    finally:
        loop.close()
    lines = stream.getvalue().decode("ascii").splitlines()
    assert len(lines) == len(HOSTILE_TEXTS)
    for line, text in zip(lines, HOSTILE_TEXTS, strict=True):
        document = json.loads(line)
        fields = ("request_id", "method", "path", "route", "client_ip", "upstream")
        assert [document[f] for f in fields] == [text] * len(fields)
        assert (document["tenant"], document["user"], document["cache"]) == (text, text, text)
        # The client's bytes as they came, each byte one character (latin-1), escaped.
        sent = text.encode("utf-8", "surrogateescape")
        assert document["user_agent"] == sent.decode("latin-1")


def test_bytes_agent_upstream_time_trace_and_a_server_errors_reason() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream = io.BytesIO()
        log = AccessLog(loop, stream)
        request = Request("POST", b"/api/v1/orders", [], b"{}", "10.0.0.7")
        request.user_agent = b"box-office/3.1 " + b"x" * 400
        request.upstream, request.attempts, request.upstream_ms = "10.1.0.5:3004", 2, 12.3456
        request.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        log.record(request, Response(502, []), "13.000", "", 2, 310, "connect_refused")
        log.record(request, Response(404, []), "1.000", "", 2, 80, "internal_error")
        bare = Request("GET", b"/live", [], b"", "10.0.0.7")
        log.record(bare, Response(200, []), "0.100")
        log.flush()
    finally:
        loop.close()
    failed, refused, plain = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (failed["bytes_in"], failed["bytes_out"]) == (2, 310)
    assert failed["user_agent"] == "box-office/3.1 " + "x" * 241  # at most 256 bytes
    assert failed["upstream_ms"] == 12.346
    assert failed["reason"] == "connect_refused"
    assert failed["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "reason" not in refused  # only a 5xx says why
    assert "upstream_ms" not in plain and "trace_id" not in plain  # no upstream, no tracing
    assert (plain["user_agent"], plain["bytes_in"], plain["bytes_out"]) == ("", 0, 0)


def test_the_user_agent_memo_keeps_short_values_only() -> None:
    """A client choosing a new 16 KiB User-Agent per request must not fill the memo with whole
    header values: a long one is cut in the line and never kept."""
    loop = asyncio.new_event_loop()
    try:
        log = AccessLog(loop, io.BytesIO())
        for n in range(50):
            request = Request("GET", b"/live", [], b"", "10.0.0.7")
            request.user_agent = str(n).encode() + b"y" * 16384
            log.record(request, Response(200, []), "0.100")
        usual = Request("GET", b"/live", [], b"", "10.0.0.7")
        usual.user_agent = b"box-office/3.1"
        log.record(usual, Response(200, []), "0.100")
        log.flush()
    finally:
        loop.close()
    assert set(log.agents) == {b"box-office/3.1"}
    assert all(len(key) <= 256 for key in log.agents)
