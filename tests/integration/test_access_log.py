"""The access log: one JSON line per request at info, with what operations need and no secret."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint
from support.upstream import Reply

TOKEN = mint(sub="user-42", tenant_id="tenant-7")
LOG_TIMEOUT_S = 5.0
POLL_S = 0.05


def access_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for line in gateway.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            if document.get("msg") == "request":
                lines.append(document)
    return lines


def line_for(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in access_lines(gateway):
            if line["request_id"] == request_id:
                return line
        time.sleep(POLL_S)
    raise AssertionError(f"no access log line for {request_id}")


def test_a_line_has_every_field_and_no_credential(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get(
        "/api/v1/tickets/1?secret-query=1",
        token=TOKEN,
        headers=[("Cookie", "session=cookie-secret"), ("X-Request-Id", "log-1")],
        body=None,
    )
    assert response.status == 200
    line = line_for(gateway, "log-1")
    instance = services["ticket"].url.removeprefix("http://")
    assert line["level"] == "info" and line["method"] == "GET"
    assert (line["route"], line["status"]) == ("/api/v1/tickets", 200)
    assert (line["upstream"], line["attempts"]) == (instance, 1)
    assert (line["tenant"], line["user"], line["client_ip"]) == ("tenant-7", "user-42", "127.0.0.1")
    assert line["limit"] == "allowed" and isinstance(line["duration_ms"], float)
    output = gateway.output()
    assert TOKEN not in output and TOKEN.split(".")[2] not in output
    assert "cookie-secret" not in output and "authorization" not in output.lower()


def test_a_refused_request_says_so(gateway: GatewayProcess) -> None:
    gateway.get("/api/v1/tickets/1", headers=[("X-Request-Id", "log-401")])
    line = line_for(gateway, "log-401")
    assert (line["status"], line["upstream"], line["attempts"], line["user"]) == (401, "", 0, "")


def test_sampling_drops_successes_but_never_server_errors(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(status=500))
    env = {"ACCESS_LOG_SAMPLE_RATE": "0"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        for n in range(5):
            gateway.get("/api/v1/tickets/1", token=TOKEN, headers=[("X-Request-Id", f"ok-{n}")])
        gateway.get("/api/v1/events/1", token=TOKEN, headers=[("X-Request-Id", "fail-1")])
        assert line_for(gateway, "fail-1")["status"] == 500
        assert not [line for line in access_lines(gateway) if line["request_id"].startswith("ok-")]
    service_fleet.reset()


def test_log_level_warn_writes_no_access_log(service_fleet: Fleet, tmp_path: Path) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), env={"LOG_LEVEL": "warn"}) as gateway:
        gateway.get("/api/v1/tickets/1", token=TOKEN)
        gateway.get("/api/v1/events/1", token=TOKEN)
        time.sleep(0.3)
        assert access_lines(gateway) == []
        assert '"level":"info"' not in gateway.output()


def test_a_line_carries_bytes_user_agent_and_upstream_time(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("User-Agent", "box-office/3.1"), ("X-Request-Id", "log-bytes")]
    response = gateway.get("/api/v1/tickets/1", token=TOKEN, headers=headers)
    assert response.status == 200
    line = line_for(gateway, "log-bytes")
    assert (line["bytes_in"], line["bytes_out"]) == (0, len(response.body))
    assert line["user_agent"] == "box-office/3.1"
    assert isinstance(line["upstream_ms"], float) and 0 < line["upstream_ms"] <= line["duration_ms"]
    assert "reason" not in line and "trace_id" not in line  # a 200; tracing is off

    sent = b'{"name":"' + b"x" * 1000 + b'"}'
    posted = gateway.request(
        "POST", "/api/v1/search/q", token=TOKEN, body=sent, headers=[("X-Request-Id", "log-post")]
    )
    line = line_for(gateway, "log-post")
    assert (line["status"], line["bytes_in"]) == (posted.status, len(sent))
    assert line["bytes_out"] == len(posted.body)


def test_a_line_without_an_upstream_has_no_upstream_time(gateway: GatewayProcess) -> None:
    gateway.get("/no/such/route", headers=[("X-Request-Id", "log-404")])
    line = line_for(gateway, "log-404")
    assert (line["status"], line["attempts"]) == (404, 0)
    assert "upstream_ms" not in line and "reason" not in line


TIMEOUT_MS = 300
BREAKER_ATTEMPTS = 15  # circuit_breaker.volume_threshold (10) and then some


def test_every_gateway_made_5xx_says_why(service_fleet: Fleet, tmp_path: Path) -> None:
    service_fleet.reset()
    service_fleet["ticket"].respond(Reply(delay_s=TIMEOUT_MS / 1000 * 5))
    urls = service_fleet.urls() | {"queue": closed_port_url()}
    config = {"services": {"ticket": {"timeout_ms": TIMEOUT_MS, "retry": {"attempts": 1}}}}
    with running_gateway(tmp_path, urls, config=config) as gateway:
        refused = gateway.get("/api/v1/queue/jobs", token=TOKEN, headers=[("X-Request-Id", "r-0")])
        timed_out = gateway.get("/api/v1/tickets/1", token=TOKEN, headers=[("X-Request-Id", "t")])
        statuses = [refused.status]
        for n in range(1, BREAKER_ATTEMPTS + 1):
            response = gateway.get(
                "/api/v1/queue/jobs", token=TOKEN, headers=[("X-Request-Id", f"r-{n}")]
            )
            statuses.append(response.status)
            if response.status == 503:
                break
        assert (refused.status, timed_out.status, statuses[-1]) == (502, 504, 503), statuses
        refused_line = line_for(gateway, "r-0")
        timeout_line = line_for(gateway, "t")
        open_line = line_for(gateway, f"r-{len(statuses) - 1}")
        output = gateway.output()
    service_fleet.reset()

    assert refused_line["reason"] == "connect_refused"
    assert refused_line["upstream"] and refused_line["attempts"] >= 1
    assert "upstream_ms" in refused_line
    assert timeout_line["reason"] == "upstream_timeout"
    assert timeout_line["upstream_ms"] >= TIMEOUT_MS * 0.9
    assert (open_line["status"], open_line["reason"]) == (503, "breaker_open")
    assert TOKEN not in output


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_with_tracing_on_a_line_carries_the_trace_id(traced: GatewayProcess) -> None:
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    headers = [("traceparent", parent), ("X-Request-Id", "log-traced")]
    assert traced.get("/api/v1/tickets/1", token=TOKEN, headers=headers).status == 200
    traced.get("/api/v1/tickets/1", token=TOKEN, headers=[("X-Request-Id", "log-new-trace")])
    assert line_for(traced, "log-traced")["trace_id"] == TRACE_ID
    fresh = line_for(traced, "log-new-trace")["trace_id"]
    assert len(fresh) == 32 and fresh != TRACE_ID and int(fresh, 16) != 0
