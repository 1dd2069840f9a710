"""The deployment files (no container engine runs here, so they are read, not run): the image
runs as a non-root user with a health check on /live, and compose wires Redis and a secret file
the gateway understands."""

from __future__ import annotations

from pathlib import Path

import yaml

from api_gateway.config.loader import SECRET_VARIABLES

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_the_gateway_as_a_non_root_user() -> None:
    steps = instructions()
    users = [value for name, value in steps if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("EXPOSE", "3000") in steps
    assert any(name == "CMD" and "api-gateway" in value for name, value in steps)


def test_the_image_checks_health_on_live() -> None:
    [check] = [value for name, value in instructions() if name == "HEALTHCHECK"]
    assert "/live" in check


def test_compose_runs_the_gateway_with_redis_and_a_secret_file() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway = compose["services"]["api-gateway"]
    assert gateway["container_name"] == "api-gateway"
    assert "3000:3000" in gateway["ports"]
    environment = gateway["environment"]
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert environment["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"
    assert "JWT_SECRET" in SECRET_VARIABLES
    assert "redis" in compose["services"]
    assert gateway["secrets"] == ["jwt_secret"]
