"""Configuration reload on SIGHUP: a single worker is supervised too, a valid file is applied
by replacing the workers, a broken one is refused with its key named and the old configuration
keeps serving, and requests in flight to a service the reload removes still finish."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from support.gateway import Fleet, GatewayProcess, gateway_env
from support.reloads import reloadable_gateway
from support.tokens import mint
from support.upstream import RecordingUpstream, Reply

from api_gateway.observability.snapshots import DIRECTORY_VARIABLE
from api_gateway.reloading import (
    SOURCE_VARIABLE,
    SUPERVISOR_VARIABLE,
    ConfigSource,
    request_reload,
)

SETTLE_S = 15.0
POLL_S = 0.05
SLOW_S = 2.0
IN_FLIGHT = 3
SECRET = "s" * 40
RELOAD_WAIT_S = 30.0
TOKEN = mint()


def with_extra_route(url: str) -> dict[str, object]:
    return {"services": {"extra": {"url": url}}, "routes": {"/extra": {"service": "extra"}}}


def settled_workers(gateway: GatewayProcess, count: int) -> set[int]:
    """The worker pids once exactly ``count`` remain (a replaced one may still be draining)."""
    deadline = time.monotonic() + SETTLE_S
    pids: set[int] = set()
    while time.monotonic() < deadline:
        pids = {worker.pid for worker in gateway.workers()}
        if len(pids) == count:
            return pids
        time.sleep(POLL_S)
    raise AssertionError(f"expected {count} workers, found {pids}:\n{gateway.output()[-3000:]}")


def test_sighup_with_one_worker_applies_the_new_configuration(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    with reloadable_gateway(tmp_path, service_fleet.urls()) as reloadable:
        gateway = reloadable.gateway
        before = gateway.get("/api/v1/extra/x", token=TOKEN).status
        [first] = settled_workers(gateway, 1)
        reloadable.write(with_extra_route(service_fleet["search"].url))

        status = reloadable.reload()

        after = gateway.get("/api/v1/extra/x", token=TOKEN).status
        workers = settled_workers(gateway, 1)
        alive = gateway.process.poll() is None
        keeper = gateway.keeper()

    assert before == 404
    assert (status.generation, status.ok, status.error) == (1, 1, 0)
    assert status.last_success_unix is not None
    assert after == 200
    assert alive, "the supervisor stopped on SIGHUP"
    assert first not in workers
    assert keeper is None, "one worker without Redis needs no keeper"


def test_a_broken_configuration_is_refused_and_the_old_one_keeps_serving(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    secret_file = tmp_path / "hmac-secret"
    secret_file.write_text(SECRET)
    env = {"INTERNAL_HMAC_SECRET_FILE": str(secret_file)}
    good = with_extra_route(service_fleet["search"].url)
    broken: list[tuple[str, str, str]] = [
        ("broken YAML", "routes: {/extra: [\n", "line 2"),
        ("unknown key", "server: {workerz: 2}\n", "server.workerz: unknown setting"),
        ("bad value", "server: {shutdown_grace_ms: soon}\n", "server.shutdown_grace_ms"),
        ("missing file", "", "cannot read"),
        ("unreadable secret file", "", "INTERNAL_HMAC_SECRET_FILE: cannot read"),
    ]
    seen: list[tuple[str, int, int, str | None, int]] = []
    with reloadable_gateway(tmp_path, service_fleet.urls(), good, env) as reloadable:
        gateway = reloadable.gateway
        [worker] = settled_workers(gateway, 1)
        for name, text, expected in broken:
            if name == "missing file":
                reloadable.config_path.unlink()
            elif name == "unreadable secret file":
                reloadable.write(good)
                secret_file.unlink()
            else:
                reloadable.write_text(text)
            status = reloadable.reload()
            served = gateway.get("/api/v1/extra/x", token=TOKEN).status
            assert expected in (status.last_error or ""), (name, status)
            assert expected in gateway.output(), f"{name}: no log line names {expected!r}"
            seen.append((name, status.error, status.ok, status.last_error, served))
        unchanged = {worker.pid for worker in gateway.workers()}
        secret_file.write_text(SECRET)
        reloadable.write(good)
        fixed = reloadable.reload()
        served_after_fix = gateway.get("/api/v1/extra/x", token=TOKEN).status

    assert [entry[1] for entry in seen] == [1, 2, 3, 4, 5]
    assert all(entry[2] == 0 for entry in seen)
    assert all(entry[4] == 200 for entry in seen), f"the old configuration stopped: {seen}"
    assert unchanged == {worker}, "a refused reload replaced the worker"
    assert (fixed.generation, fixed.ok, fixed.error) == (6, 1, 5)
    assert served_after_fix == 200


def test_requests_in_flight_to_a_removed_service_finish_and_new_ones_get_404(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    outcomes: list[int] = []
    with RecordingUpstream("extra") as slow:
        slow.respond(Reply(delay_s=SLOW_S))
        config, two = with_extra_route(slow.url), ["--workers", "2"]
        with reloadable_gateway(tmp_path, service_fleet.urls(), config, extra_args=two) as gw:
            gateway, reloadable = gw.gateway, gw

            def one() -> None:
                outcomes.append(gateway.get("/api/v1/extra/slow", token=TOKEN).status)

            threads = [threading.Thread(target=one, daemon=True) for _ in range(IN_FLIGHT)]
            for thread in threads:
                thread.start()
            recorded = len(slow.wait_for_requests(IN_FLIGHT, timeout_s=SETTLE_S))
            reloadable.write({})
            status = reloadable.reload()
            after = [gateway.get("/api/v1/extra/slow", token=TOKEN).status for _ in range(4)]
            for thread in threads:
                thread.join(SETTLE_S)
            keeper = gateway.keeper()

    assert recorded == IN_FLIGHT
    assert status.ok == 1
    assert after == [404] * 4
    assert outcomes == [200] * IN_FLIGHT, "a request in flight was cut by the reload"
    assert keeper is not None, "two workers without Redis share a keeper"


def test_a_reload_applies_a_new_worker_count(service_fleet: Fleet, tmp_path: Path) -> None:
    with reloadable_gateway(tmp_path, service_fleet.urls()) as reloadable:
        gateway = reloadable.gateway
        settled_workers(gateway, 1)
        no_keeper = gateway.keeper() is None
        reloadable.write({"server": {"workers": 3}})
        grown = reloadable.reload()
        three = settled_workers(gateway, 3)
        keeper = gateway.keeper() is not None
        reloadable.write({"server": {"workers": 2}})
        shrunk = reloadable.reload()
        two = settled_workers(gateway, 2)
        statuses = [gateway.get("/api/v1/search/q").status for _ in range(10)]

    assert no_keeper
    assert grown.ok == 1 and shrunk.ok == 2
    assert len(three) == 3 and len(two) == 2
    assert keeper, "more than one worker without Redis: the keeper is started"
    assert statuses == [200] * 10


def test_request_reload_answers_a_broken_file_at_once_and_waits_for_a_good_one(
    service_fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the admin API's POST /reload runs in a worker, here with the worker's environment."""
    with reloadable_gateway(tmp_path, service_fleet.urls()) as reloadable:
        gateway = reloadable.gateway
        for name, value in gateway_env(service_fleet.urls()).items():
            monkeypatch.setenv(name, value)
        source = ConfigSource(str(reloadable.config_path), "127.0.0.1", gateway.port)
        monkeypatch.setenv(SOURCE_VARIABLE, source.encoded())
        monkeypatch.setenv(SUPERVISOR_VARIABLE, str(gateway.pid))
        monkeypatch.setenv(DIRECTORY_VARIABLE, reloadable.directory() or "")
        reloadable.write({"server": {"workerz": 2}})
        broken = asyncio.run(request_reload(RELOAD_WAIT_S))
        generation_after_broken = reloadable.status().generation
        reloadable.write(with_extra_route(service_fleet["search"].url))
        good = asyncio.run(request_reload(RELOAD_WAIT_S))
        served = gateway.get("/api/v1/extra/x", token=TOKEN).status

    assert (broken.outcome, broken.key) == ("error", "server.workerz")
    assert "unknown setting" in broken.message
    assert generation_after_broken == 0, "a file the worker refused reached the supervisor"
    assert (good.outcome, good.generation) == ("ok", 1)
    assert served == 200


def test_post_reload_on_the_admin_port_refuses_a_broken_file_and_applies_a_good_one(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    with reloadable_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", "2"]) as gw:
        gateway = gw.gateway
        gw.write({"server": {"workerz": 2}})
        broken = gateway.admin("POST", "/reload")
        served_while_broken = gateway.get("/api/v1/extra/x", token=TOKEN).status
        gw.write(with_extra_route(service_fleet["search"].url))
        good = gateway.admin("POST", "/reload")
        served = [gateway.get("/api/v1/extra/x", token=TOKEN).status for _ in range(6)]
        generation = gateway.admin_get("/health").json()["config"]["generation"]

    assert broken.status == 422, broken.body
    assert broken.header("content-type") == "application/problem+json"
    assert "server.workerz" in broken.json()["detail"]
    assert served_while_broken == 404
    assert good.status == 200, good.body
    assert good.json() == {"status": "reloaded", "generation": 1}
    assert served == [200] * 6, "a worker still runs the old configuration after POST /reload"
    assert generation == 1
