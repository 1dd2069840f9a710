"""The access log: one JSON line per request at info, with what operations need and no secret."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support.gateway import Fleet, GatewayProcess, running_gateway
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
