"""Shared fixtures: a fleet of recording upstreams and a gateway process per test module.

A module changes its gateway by overriding ``gateway_config`` (a YAML document as a dict, or None
for the built-in defaults) or ``gateway_extra_env``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.collector import Collector
from support.gateway import Fleet, GatewayProcess, running_gateway, stop_all_gateways
from support.redis import RedisServer


@pytest.fixture(scope="session", autouse=True)
def _no_gateway_outlives_the_session() -> Iterator[None]:
    yield
    stop_all_gateways()


@pytest.fixture(scope="module")
def service_fleet() -> Iterator[Fleet]:
    fleet = Fleet()
    yield fleet
    fleet.stop()


@pytest.fixture
def services(service_fleet: Fleet) -> Fleet:
    """The module's upstreams, with recordings and replies cleared for this test."""
    service_fleet.reset()
    return service_fleet


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis for one test, stopped after it."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any] | None:
    return None


@pytest.fixture(scope="module")
def gateway_extra_env() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def gateway(
    service_fleet: Fleet,
    module_dir: Path,
    gateway_config: dict[str, Any] | None,
    gateway_extra_env: dict[str, str],
) -> Iterator[GatewayProcess]:
    with running_gateway(
        module_dir, service_fleet.urls(), gateway_config, gateway_extra_env
    ) as process:
        yield process


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    """An OTLP/HTTP receiver for the module's traced gateway."""
    collector = Collector().start()
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def traced(
    service_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[GatewayProcess]:
    """A gateway of the module's own that exports its spans to ``collector``."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with running_gateway(tmp_path_factory.mktemp("traced"), service_fleet.urls(), env=env) as gw:
        yield gw
