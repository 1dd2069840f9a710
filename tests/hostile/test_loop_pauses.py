"""Hostile JSON bodies against the public, fail-closed login: validation is bounded in cost, and a
loop that was busy anyway is never taken for a Redis outage (which would answer 503 to everyone
on /auth)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from support.assertions import assert_problem
from support.client import RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text
from support.redis import RedisServer

LOGIN = "/api/v1/auth/login"
# The worst bodies go to a public path of the same fail-closed route without a body schema:
# the JSON bounds are under test here, not login's schema.
BOUNDED = "/api/v1/auth/verify-email"
JSON = [("Content-Type", "application/json")]
MIB = 1 << 20
PROBES = 4  # keep-alive clients logging in all along: some Redis command is always in flight
PROBE_LIMIT = 100_000  # requests per probe client, a bound on the loop, never reached
ANSWER_BOUND_S = 1.0
CPU_PER_BODY_S = 0.03  # measured: under 5 ms once bounded; 100-150 ms for the nested body before


def nested(depth: int) -> bytes:
    """Arrays ``depth`` deep, repeated to fill 1 MiB: the body that took 120 ms to parse."""
    one = b"[" * depth + b"]" * depth
    return b"[" + b",".join([one] * (MIB // (2 * depth + 1) - 1)) + b"]"


WORST_BODIES = {
    "nested 1000 deep": nested(1000),
    "nested 60 deep": nested(60),
    "deeper than orjson allows": b"[" * MIB,
    "empty arrays": b"[" + b"[]," * (MIB // 3 - 1) + b"[]]",
    "empty objects": b"[" + b"{}," * (MIB // 3 - 1) + b"{}]",
    "many numbers": b"[" + b"0," * (MIB // 2 - 2) + b"0]",
    "deep but small": b"[" * 100 + b"]" * 100,
    "many keys": b"{" + b",".join(b'"k%d":0' % i for i in range(MIB // 12)) + b"}",
    "many strings": b"[" + b'"",' * (MIB // 3 - 1) + b'""]',
    "one long string": b'"' + b"a" * (MIB - 2) + b'"',
    "many escapes": b'"' + b"\\u0041" * (MIB // 6 - 1) + b'"',
    "big numbers": b"[" + b",".join([b"1" * 300] * (MIB // 301 - 1)) + b"]",
    "quotes and brackets in strings": b'["' + b'[{,\\"' * (MIB // 5 - 1) + b'"]',
}

TOO_MANY_VALUES = (
    "nested 1000 deep", "nested 60 deep", "deeper than orjson allows", "empty arrays",
    "empty objects", "many numbers", "many keys", "many strings",
)  # fmt: skip


def start(
    tmp_path: Path, fleet: Fleet, redis: RedisServer, config: dict[str, Any] | None
) -> contextlib.AbstractContextManager[GatewayProcess]:
    env = {"REDIS_URL": f"{redis.url}/0"}
    return running_gateway(tmp_path, fleet.urls(), config, env)


class Probe:
    """Clients logging in on keep-alive connections, each answer's status and time recorded."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.port = gateway.port
        self.answers: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(PROBES)]

    def __enter__(self) -> Probe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        request = build_request("POST", LOGIN, JSON, b'{"email": "a@b.co", "password": "x"}')
        with RawConnection(self.port) as connection:
            for _ in range(PROBE_LIMIT):
                if self._stop.is_set():
                    return
                started = time.monotonic()
                connection.send(request)
                status = connection.read_response("POST").status
                self.answers.append((status, time.monotonic() - started))

    def wait_for_answers(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.answers) < count:
            assert time.monotonic() < deadline, "the probe got no answers"
            time.sleep(0.01)


def post(gateway: GatewayProcess, body: bytes) -> RawResponse:
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", BOUNDED, JSON, body))
        return connection.read_response("POST")


def cpu_seconds(gateway: GatewayProcess) -> float:
    """CPU used by the gateway and its workers: unlike wall time, not inflated by a busy host."""
    processes = [psutil.Process(gateway.pid), *gateway.children()]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def test_the_worst_json_bodies_cost_little_and_never_close_login(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    refused: dict[str, str] = {}
    costs: dict[str, float] = {}
    with start(tmp_path, service_fleet, redis_server, None) as gateway:
        for name, body in WORST_BODIES.items():  # on a quiet gateway: its CPU is this body's
            before = cpu_seconds(gateway)
            response = post(gateway, body)
            costs[name] = cpu_seconds(gateway) - before
            if response.status != 200:
                refused[name] = assert_problem(response, 400)["detail"]  # type: ignore[assignment]
        with Probe(gateway) as probe:
            probe.wait_for_answers(20)
            again = {name: post(gateway, body).status for name, body in WORST_BODIES.items()}
            probe.wait_for_answers(len(probe.answers) + 20)

    assert {status for status, _ in probe.answers} == {200}
    assert max(seconds for _, seconds in probe.answers) < ANSWER_BOUND_S
    assert all(cost < CPU_PER_BODY_S for cost in costs.values()), costs
    assert again == {name: 400 if name in refused else 200 for name in WORST_BODIES}
    assert "nested deeper than 64 levels" in refused["deep but small"]
    for name in TOO_MANY_VALUES:
        assert "more than 10000 values" in refused[name], name
    assert "one long string" not in refused and "many escapes" not in refused


def test_a_busy_loop_is_not_a_redis_outage(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    # Bounds lifted so that the nested body holds the loop ~120 ms again, as before the fix.
    lifted = {"json_body": True, "json_max_depth": 1024, "json_max_values": 10_000_000}
    config = {"routes": {"/auth": {"validation": lifted}}}
    slow_body = WORST_BODIES["nested 1000 deep"]
    with start(tmp_path, service_fleet, redis_server, config) as gateway, Probe(gateway) as probe:
        probe.wait_for_answers(20)
        slow = [post(gateway, slow_body).status for _ in range(10)]
        probe.wait_for_answers(len(probe.answers) + 20)
        outages = metrics_text(gateway)

    assert slow == [200] * 10
    assert {status for status, _ in probe.answers} == {200}
    assert "gateway_ratelimit_store_outages_total 0" in outages
