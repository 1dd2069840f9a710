"""The request path runs compiled when the build matches the sources, interpreted when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint

from api_gateway.compiled import MANIFEST

TOKEN = mint(sub="user-1", tenant_id="tenant-1")


def listening_line(gateway: GatewayProcess) -> dict[str, object]:
    for line in gateway.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == "listening":
            return dict(json.loads(line))
    raise AssertionError(f"no 'listening' line in:\n{gateway.output()}")


def test_the_gateway_runs_the_compiled_build_that_make_produced(
    services: Fleet, tmp_path: Path
) -> None:
    if not MANIFEST.exists():
        pytest.skip("no compiled build: `make compiled` (run by `make test`) produces it")
    with running_gateway(tmp_path, services.urls()) as gateway:
        response = gateway.get("/api/v1/tickets/1", token=TOKEN)

        assert response.status == 200
        assert listening_line(gateway)["compiled"] is True, (
            "the compiled build is stale: `make compiled` rebuilds it"
        )
        assert "running interpreted" not in gateway.stderr()


def test_with_api_gateway_compiled_0_the_same_request_runs_interpreted(
    services: Fleet, tmp_path: Path
) -> None:
    with running_gateway(tmp_path, services.urls(), env={"API_GATEWAY_COMPILED": "0"}) as gateway:
        response = gateway.get("/api/v1/tickets/1", token=TOKEN)

        assert response.status == 200
        assert services["ticket"].requests[-1].path == "/api/v1/tickets/1"
        assert listening_line(gateway)["compiled"] is False
