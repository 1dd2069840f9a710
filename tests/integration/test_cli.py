"""The command line: config check, bad configuration refusing to start, and minted dev tokens."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jwt
import pytest
from support.gateway import (
    GATEWAY_BINARY,
    Fleet,
    GatewayProcess,
    gateway_env,
    launch_gateway,
    run_until_exit,
    write_config,
)
from support.tokens import ISSUER, JWT_SECRET

from api_gateway import compiled

PREFIXES = ["/auth", "/tickets", "/webhooks", "/search", "/files", "/venue", "/event"]
CLI_TIMEOUT_S = 20


def run_cli(
    args: list[str], env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY_BINARY, *args],
        env=gateway_env({}, env_extra),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_config_check_prints_the_route_table_for_a_valid_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"services": {"ticket": {"timeout_ms": 300}}})

    result = run_cli(["config", "check", str(path)])

    assert result.returncode == 0, result.stderr
    for prefix in PREFIXES:
        assert prefix in result.stdout
    assert "ticket" in result.stdout and "payment" in result.stdout


INVALID = [
    pytest.param({"server": {"port": "abc"}}, "server.port", id="port-not-a-number"),
    pytest.param({"routes": {"/tickets": {"service": "nosuch"}}}, "routes./tickets.service",
                 id="unknown-service"),
    pytest.param({"server": {"bogus": 1}}, "server.bogus", id="unknown-key"),
    pytest.param({"services": {"ticket": {"url": "ftp://x"}}}, "services.ticket.url",
                 id="bad-service-url"),
    pytest.param({"server": {"max_header_bytes": -5}}, "server.max_header_bytes",
                 id="negative-limit"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "key"), INVALID)
def test_config_check_names_the_offending_key(
    tmp_path: Path, config: dict[str, Any], key: str
) -> None:
    result = run_cli(["config", "check", str(write_config(tmp_path, config))])

    assert result.returncode == 1
    assert key in result.stdout + result.stderr


def test_a_gateway_with_a_bad_config_refuses_to_start_naming_the_key(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    config = {"routes": {"/tickets": {"service": "nosuch"}}}
    gateway = launch_gateway(tmp_path, service_fleet.urls(), config=config)

    assert run_until_exit(gateway) not in (0, None)
    assert "routes./tickets.service" in gateway.output()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param({"PORT": "abc"}, ("PORT", "server.port"), id="port"),
        pytest.param({"JWT_SECRET": ""}, ("JWT_SECRET", "jwt.access_secret"), id="no-secret"),
        pytest.param({"JWT_SECRET": "short"}, ("JWT_SECRET", "jwt.access_secret"), id="short"),
        pytest.param({"GATEWAY_WORKERS": "many"}, ("GATEWAY_WORKERS", "server.workers"), id="w"),
        pytest.param({"TRUSTED_PROXIES": "not-a-cidr"}, ("TRUSTED_PROXIES", "trusted_proxies"),
                     id="cidr"),
    ],
)  # fmt: skip
def test_a_bad_environment_value_stops_start_up_naming_it(
    service_fleet: Fleet, tmp_path: Path, env: dict[str, str], names: tuple[str, ...]
) -> None:
    command = [GATEWAY_BINARY, "serve", "--host", "127.0.0.1"]
    result = subprocess.run(
        command,
        env=gateway_env(service_fleet.urls(), env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )

    assert result.returncode != 0
    assert any(name in result.stderr + result.stdout for name in names), result.stderr


def test_token_command_mints_a_token_the_gateway_accepts(
    gateway: GatewayProcess, services: Fleet
) -> None:
    result = run_cli(["token", "--sub", "u1", "--tenant", "t1", "--role", "admin"])
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()

    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer=ISSUER)
    response = gateway.get("/api/v1/tickets/1", token=token)

    assert (claims["sub"], claims["tenant_id"], claims["role"]) == ("u1", "t1", "admin")
    assert response.status == 200
    request = services["ticket"].only_request()
    assert request.header_values("x-user-id") == ["u1"]
    assert request.header_values("x-tenant-id") == ["t1"]
    assert request.header_values("x-user-role") == ["admin"]


def test_a_worker_that_cannot_start_stops_the_gateway_in_one_line(tmp_path: Path) -> None:
    """Not a restart every second forever: a store the workers cannot open (here the API-key
    file in a directory that does not exist) stops start-up, and says which setting."""
    config = tmp_path / "gateway.yaml"
    config.write_text(f"api_keys: {{path: {tmp_path / 'missing' / 'keys.sqlite3'}}}\n")
    done = subprocess.run(
        [GATEWAY_BINARY, "serve", "--port", "0", "--workers", "2", "--config", str(config)],
        env={
            **os.environ,
            "JWT_SECRET": JWT_SECRET,
            "API_KEY_PEPPER": "p" * 40,
            "ADMIN_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("api-gateway: worker 0 did not start: api_keys.path: ")


def test_a_port_in_use_is_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [GATEWAY_BINARY, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "JWT_SECRET": JWT_SECRET},
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"api-gateway: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_version_says_the_version_the_request_path_and_python() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"api-gateway {metadata.version('api-gateway')}"
    if compiled.ACTIVE:
        assert lines[1] == "request path: compiled (mypyc)"
    else:
        assert lines[1].startswith("request path: interpreted (")  # and why
    assert lines[2].startswith(f"python: CPython {platform.python_version()} ")

    forced = run_cli(["--version"], {"API_GATEWAY_COMPILED": "0"})
    assert forced.returncode == 0
    assert "request path: interpreted (API_GATEWAY_COMPILED=0)" in forced.stdout
    # A top-level flag: it wins over whatever else the command line says.
    assert run_cli(["--version", "serve", "--port", "not-a-port"]).returncode == 0
