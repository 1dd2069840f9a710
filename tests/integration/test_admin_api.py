"""The admin listener, seen from outside: a real gateway with two workers, a token, two search
instances and a queue service that is down. Its token is required; every endpoint answers;
commands (eject, restore, breaker reset, log level) reach both workers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, launch_gateway, run_until_exit, running_gateway
from support.ports import closed_port_url, free_port
from support.tokens import mint
from support.upstream import RecordingUpstream

from api_gateway.operations import WRITE_EVERY_S

TOKEN = "admin-token-for-the-tests-0123456789"
SECRETS = {
    "ADMIN_TOKEN": TOKEN,
    "API_KEY_PEPPER": "pepper-for-the-admin-tests-0123456789abcdef",
    "STRIPE_WEBHOOK_SECRET": "whsec_admin_tests_0123456789abcdef",
    "INTERNAL_HMAC_SECRET": "internal-hmac-for-the-admin-tests-0123456789",
}
FRESH_CONNECTIONS = 40
WAIT_S = 5.0


@pytest.fixture(scope="module")
def search_pair() -> Iterator[list[RecordingUpstream]]:
    pair = [RecordingUpstream(f"search-{n}").start() for n in range(2)]
    yield pair
    for upstream in pair:
        upstream.stop()


@pytest.fixture(scope="module")
def admin_gateway(
    service_fleet: Fleet,
    tmp_path_factory: pytest.TempPathFactory,
    search_pair: list[RecordingUpstream],
) -> Iterator[GatewayProcess]:
    urls = service_fleet.urls() | {
        "search": ",".join(u.url for u in search_pair),
        "queue": closed_port_url(),
    }
    config = {"services": {"search": {"load_balancer": {"strategy": "round_robin"}}}}
    with running_gateway(
        tmp_path_factory.mktemp("admin"), urls, config, SECRETS, ["--workers", "2"]
    ) as gateway:
        yield gateway


def address(upstream: RecordingUpstream) -> str:
    return upstream.url.removeprefix("http://")


def until(check: object, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.1)
    return False


def assert_problem(response: RawResponse, status: int) -> None:
    assert response.status == status, response.body
    assert response.header("content-type") == "application/problem+json"
    assert response.json()["request_id"]


# --- the token ----------------------------------------------------------------------------------


def test_the_token_is_required(admin_gateway: GatewayProcess) -> None:
    missing = admin_gateway.admin_get("/health", token=None)
    wrong = admin_gateway.admin_get("/health", token="not-the-token")
    right = admin_gateway.admin_get("/health")

    assert_problem(missing, 401)
    assert (missing.header("www-authenticate") or "").startswith("Bearer")
    assert_problem(wrong, 401)
    assert right.status == 200
    assert TOKEN not in admin_gateway.output()


def test_a_non_loopback_admin_listener_without_a_token_refuses_to_start(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    gateway = launch_gateway(tmp_path, service_fleet.urls(), env={"ADMIN_HOST": "0.0.0.0"})

    assert run_until_exit(gateway) == 1
    assert "ADMIN_TOKEN" in gateway.stderr()


def test_an_admin_port_in_use_stops_start_up_in_one_line(
    service_fleet: Fleet, tmp_path: Path, admin_gateway: GatewayProcess
) -> None:
    taken = str(admin_gateway.admin_port)
    gateway = launch_gateway(tmp_path, service_fleet.urls(), env={"ADMIN_PORT": taken})

    assert run_until_exit(gateway) == 1
    lines = gateway.stderr().strip().splitlines()
    assert len(lines) == 1 and "ADMIN_PORT" in lines[0] and taken in lines[0], lines


# --- what it answers ----------------------------------------------------------------------------


def test_health_shows_both_workers_and_the_merged_state(
    admin_gateway: GatewayProcess, search_pair: list[RecordingUpstream]
) -> None:
    for _ in range(6):
        assert admin_gateway.get("/api/v1/search/q").status == 200

    time.sleep(WRITE_EVERY_S * 1.5)  # each worker's state document is at most this old
    health = admin_gateway.admin_get("/health").json()
    pids = {worker.pid for worker in admin_gateway.workers()}
    assert {w["pid"] for w in health["workers"]} == pids
    search = health["services"]["search"]
    assert {i["instance"] for i in search["instances"]} == {address(u) for u in search_pair}
    assert all(i["workers"] == 2 for i in search["instances"])
    assert set(search["breaker"]["workers"]) == {str(pid) for pid in pids}
    assert health["store"]["kind"] == "keeper"
    assert health["config"]["generation"] == 0
    assert health["version"]
    assert health["routes"]["/api/v1/search"]["requests"] >= 6


def test_metrics_config_and_routes(admin_gateway: GatewayProcess) -> None:
    metrics = admin_gateway.admin_get("/metrics")
    config = admin_gateway.admin_get("/config")
    routes = admin_gateway.admin_get("/routes").json()["routes"]

    assert metrics.status == 200 and b"gateway_requests_total" in metrics.body
    assert config.status == 200
    for secret in (*SECRETS.values(), "s" * 8):
        assert secret not in config.body.decode()
    assert config.json()["admin"]["token"] == "[redacted]"
    tickets = next(r for r in routes if r.get("route") == "/api/v1/tickets" and "path" not in r)
    assert tickets["service"] == "ticket"
    assert tickets["policies"][0] == "RequestBounds" and tickets["policies"][-1] == "UpstreamCall"
    assert any("aggregate" in r for r in routes)


def test_unknown_paths_methods_and_reload(admin_gateway: GatewayProcess) -> None:
    assert_problem(admin_gateway.admin_get("/nowhere"), 404)
    wrong_method = admin_gateway.admin("DELETE", "/health")
    assert_problem(wrong_method, 405)
    assert wrong_method.header("allow") == "GET"
    # Reloading itself is tested in test_reload.py; here it is guarded like the rest.
    assert_problem(admin_gateway.admin("POST", "/reload", token=None), 401)
    assert_problem(admin_gateway.admin("GET", "/reload"), 405)


def test_the_status_page_is_served(admin_gateway: GatewayProcess) -> None:
    # Without the token: a browser's navigation cannot send one; the page holds no data and
    # asks for the token before it fetches /health, which needs it.
    page = admin_gateway.admin_get("/", token=None)
    health = admin_gateway.admin_get("/health", token=None)

    assert health.status == 401
    assert page.status == 200
    assert (page.header("content-type") or "").startswith("text/html")
    assert b"<script>" in page.body and b"http" not in page.body.replace(b"http-equiv", b"")


# --- commands -----------------------------------------------------------------------------------


def test_eject_reaches_both_workers_and_restore_undoes_it(
    admin_gateway: GatewayProcess, search_pair: list[RecordingUpstream]
) -> None:
    first, second = search_pair
    target = f"/services/search/instances/{address(first)}"

    ejected = admin_gateway.admin("POST", target + "/eject")
    for upstream in search_pair:
        upstream.reset()
    statuses = [admin_gateway.get("/api/v1/search/q").status for _ in range(FRESH_CONNECTIONS)]
    during = (len(first.requests), len(second.requests))
    last = admin_gateway.admin("POST", f"/services/search/instances/{address(second)}/eject")
    health = admin_gateway.admin_get("/health").json()
    restored = admin_gateway.admin("POST", target + "/restore")
    for upstream in search_pair:
        upstream.reset()
    after = [admin_gateway.get("/api/v1/search/q").status for _ in range(FRESH_CONNECTIONS)]

    assert ejected.status == 200, ejected.body
    assert ejected.json()["pending"] == [] and len(ejected.json()["applied"]) == 2
    assert statuses == [200] * FRESH_CONNECTIONS
    assert during == (0, FRESH_CONNECTIONS)
    assert_problem(last, 409)
    assert last.json()["type"].endswith("last-instance")
    shown = {i["instance"]: i for i in health["services"]["search"]["instances"]}
    assert shown[address(first)]["operator_ejected"] and shown[address(first)]["ejected"]
    assert not shown[address(second)]["ejected"]
    assert restored.status == 200 and len(restored.json()["applied"]) == 2
    assert after == [200] * FRESH_CONNECTIONS
    assert first.requests and second.requests


def test_unknown_service_or_instance_is_404(admin_gateway: GatewayProcess) -> None:
    assert_problem(admin_gateway.admin("POST", "/services/nope/instances/1.2.3.4:5/eject"), 404)
    assert_problem(admin_gateway.admin("POST", "/services/search/instances/1.2.3.4:5/eject"), 404)
    assert_problem(admin_gateway.admin("POST", "/services/nope/breaker/reset"), 404)


def test_breaker_reset_closes_a_tripped_breaker_in_every_worker(
    admin_gateway: GatewayProcess,
) -> None:
    def state() -> str:
        return str(
            admin_gateway.admin_get("/health").json()["services"]["queue"]["breaker"]["state"]
        )

    def tripped() -> bool:
        admin_gateway.get("/api/v1/queue/jobs", token=mint())
        return state() == "OPEN"

    assert until(tripped, timeout_s=10.0)

    reset = admin_gateway.admin("POST", "/services/queue/breaker/reset")
    time.sleep(0.5)  # several breaker-sync periods: nobody reopens it from old windows

    assert reset.status == 200 and len(reset.json()["applied"]) == 2
    workers = admin_gateway.admin_get("/health").json()["services"]["queue"]["breaker"]["workers"]
    assert set(workers.values()) == {"CLOSED"}


def test_log_level_changes_in_every_worker(admin_gateway: GatewayProcess) -> None:
    bad = admin_gateway.admin("PUT", "/log-level", body=b'{"level": "loud"}')
    changed = admin_gateway.admin("PUT", "/log-level", body=b'{"level": "debug"}')
    for _ in range(4):
        admin_gateway.admin_get("/log-level")
    seen = until(lambda: '"level":"debug"' in admin_gateway.output())
    current = admin_gateway.admin_get("/log-level").json()
    back = admin_gateway.admin("PUT", "/log-level", body=b'{"level": "info"}')

    assert_problem(bad, 400)
    assert "debug" in bad.json()["detail"] and "info" in bad.json()["detail"]
    assert changed.status == 200 and len(changed.json()["applied"]) == 2
    assert seen
    assert current["level"] == "debug"
    assert back.status == 200


def test_a_gateway_started_with_its_own_admin_port(service_fleet: Fleet, tmp_path: Path) -> None:
    port = free_port()
    with running_gateway(tmp_path, service_fleet.urls(), env={"ADMIN_PORT": str(port)}) as gateway:
        assert gateway.admin_port == port
        health = gateway.admin_get("/health").json()
    assert health["worker_count"] == 1 and "admin listening" in gateway.output()


def test_only_the_admin_addresses_reach_it(service_fleet: Fleet, tmp_path: Path) -> None:
    """Bound to loopback (the default), another address of the host is refused; and
    ``admin.allow`` turns away a client outside it, whether or not it has the token."""
    env = {"ADMIN_ALLOW": "10.0.0.0/8"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        outside = gateway.admin_get("/health")
        page = gateway.admin_get("/")
        other_address = socket.socket()
        try:
            other_address.settimeout(2)
            refused = other_address.connect_ex(("127.0.0.2", gateway.admin_port))
        finally:
            other_address.close()
        traffic = gateway.get("/health")

    assert_problem(outside, 403)
    assert_problem(page, 403)
    assert refused != 0, "the admin listener bound to 127.0.0.1 answered on 127.0.0.2"
    assert traffic.status == 200  # admin.allow has no say on the traffic port
