#!/usr/bin/env python3
"""Soak: mixed traffic against one gateway while faults come and go; is anything growing?

    .venv/bin/python bench/soak.py                # 10 min; writes bench/results/<date>-soak.md
    .venv/bin/python bench/soak.py --minutes 0.1  # a smoke run

Traffic: GET and POST, with and without a token, a cached route, a rate-limited client, a
streamed 1 MiB download, and a service behind a fault proxy cycling through latency, stalls,
resets, cut bodies, garbage and kill/restart; the private redis-server behind the limits is
frozen, flushed and restarted in turn. Every ``--sample-s`` seconds: the gateway's RSS, open file
descriptors, event-loop tasks (``gateway_event_loop_tasks`` on /metrics) and outcomes by kind.
Pass: no unexpected outcome, and the last third of the samples no higher than the first third
(within a tolerance): flat.
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test suite's real servers and fault proxy

from support.client import IncompleteResponse, http_request  # noqa: E402
from support.fault_proxy import FaultProxy, Mode  # noqa: E402
from support.gateway import Fleet, GatewayProcess, launch_gateway  # noqa: E402
from support.redis import RedisServer  # noqa: E402
from support.tokens import mint  # noqa: E402
from support.upstream import Reply  # noqa: E402

FAULTED = "marketplace"
FAULT_EVERY_S = 15.0
REDIS_EVERY_S = 40.0
SLOW_ANSWER_S = 5.0
RSS_TOLERANCE = 1.15  # the last third may be up to 15 % above the first...
RSS_SLACK_MB = 4.0  # ...plus this much (allocator noise on a small process)
COUNT_SLACK = 16  # fds and tasks: the last third's mean may exceed the first's by this much
FAULTS: list[tuple[Mode, float, int]] = [
    (Mode.PASS, 0, 0),
    (Mode.LATENCY, 0.2, 0),
    (Mode.STALL, 0, 0),
    (Mode.RESET, 0, 10),
    (Mode.CLOSE_MID_BODY, 0, 100),
    (Mode.GARBAGE, 0, 0),
]
# Outcomes that faults or policies explain, by traffic kind; anything else is an error.
EXPECTED = {
    "search": {"200"},
    "events": {"200"},
    "anonymous": {"401"},
    "limited": {"200", "429"},
    "stream": {"200"},
    "faulted-get": {"200", "502", "503", "504"},
    "faulted-post": {"200", "502", "503", "504"},
}


@dataclass
class Sample:
    at_s: float
    rss_mb: float
    fds: int
    tasks: int
    requests: int
    unexpected: int


class Traffic(threading.Thread):
    def __init__(self, port: int, seed: int, outcomes: Counter[str], lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.port, self.rng, self.outcomes, self.lock = port, random.Random(seed), outcomes, lock
        self.stopping = threading.Event()
        self.kinds: dict[str, Callable[[], int]] = {
            "search": lambda: self._get(f"/api/v1/search/q?q=s{self.rng.randrange(50)}"),
            "events": lambda: self._get(f"/api/v1/events/{self.rng.randrange(20)}", mint()),
            "anonymous": lambda: self._get("/api/v1/events/1"),
            "limited": lambda: self._get("/api/v1/search/q?q=l", ip="192.0.2.1"),
            "stream": lambda: self._get("/api/v1/files/health"),
            "faulted-get": lambda: self._get("/api/v1/marketplace/listings", mint()),
            # Not /listings: its POST has a body schema (config/schemas), this body is not one.
            "faulted-post": lambda: self._post("/api/v1/marketplace/offers", mint()),
        }

    def run(self) -> None:
        names = list(self.kinds)
        while not self.stopping.is_set():
            kind = self.rng.choice(names)
            started = time.monotonic()
            try:
                outcome = str(self.kinds[kind]())
            except (OSError, IncompleteResponse) as exc:
                outcome = type(exc).__name__
            if time.monotonic() - started > SLOW_ANSWER_S:
                outcome = "slow"
            with self.lock:
                self.outcomes[f"{kind} {outcome}"] += 1

    def _get(self, target: str, token: str | None = None, ip: str | None = None) -> int:
        headers = {"x-forwarded-for": ip or self._address()}
        return http_request(self.port, "GET", target, headers, token=token).status

    def _post(self, target: str, token: str) -> int:
        headers = {"x-forwarded-for": self._address()}
        return http_request(self.port, "POST", target, headers, b'{"n": 1}', token).status

    def _address(self) -> str:
        """A client among 65536: none of them comes near the global limit."""
        return f"10.9.{self.rng.randrange(256)}.{self.rng.randrange(256)}"


class Faults(threading.Thread):
    """Cycles the proxy's faults (a kill and restart once per cycle) and Redis's troubles."""

    def __init__(self, proxy: FaultProxy, redis: RedisServer) -> None:
        super().__init__(daemon=True)
        self.proxy, self.redis, self.stopping = proxy, redis, threading.Event()
        self.log: list[str] = []

    def run(self) -> None:
        started, step = time.monotonic(), 0
        next_redis = started + REDIS_EVERY_S / 2
        while not self.stopping.wait(FAULT_EVERY_S / 3):
            if time.monotonic() >= next_redis:
                self._trouble_redis(step)
                next_redis = time.monotonic() + REDIS_EVERY_S
            step += 1
            if step % 3 == 0:
                self._next_fault(step // 3)

    def _next_fault(self, n: int) -> None:
        if n % (len(FAULTS) + 1) == len(FAULTS):
            self.proxy.kill()
            self.stopping.wait(1.0)
            self.proxy.restart()
            self.log.append("proxy killed and restarted")
            return
        mode, latency_s, after = FAULTS[n % (len(FAULTS) + 1)]
        self.proxy.set(mode, latency_s, after)
        self.log.append(f"proxy {mode.value}")

    def _trouble_redis(self, n: int) -> None:
        kind = n % 3
        if kind == 0:
            self.redis.signal(signal.SIGSTOP)
            self.stopping.wait(2.0)
            self.redis.signal(signal.SIGCONT)
            self.log.append("redis frozen 2 s")
        elif kind == 1:
            self.redis.stop()
            self.stopping.wait(2.0)
            self.redis.start()
            self.log.append("redis stopped 2 s and restarted")
        else:
            self._flush()
            self.log.append("redis flushed")

    def _flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(64)


def metric(port: int, name: str) -> int:
    body = http_request(port, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return -1


def unexpected(outcomes: Counter[str]) -> Counter[str]:
    bad: Counter[str] = Counter()
    for key, count in outcomes.items():
        kind, outcome = key.split(" ", 1)
        if outcome not in EXPECTED[kind]:
            bad[key] += count
    return bad


def sample(gateway: GatewayProcess, started: float, outcomes: Counter[str]) -> Sample:
    process = psutil.Process(gateway.pid)
    return Sample(
        at_s=time.monotonic() - started,
        rss_mb=process.memory_info().rss / 2**20,
        fds=process.num_fds(),
        tasks=metric(gateway.admin_port, "gateway_event_loop_tasks"),
        requests=sum(outcomes.values()),
        unexpected=sum(unexpected(outcomes).values()),
    )


def flat(samples: list[Sample]) -> tuple[bool, str]:
    third = max(len(samples) // 3, 1)
    first, last = samples[:third], samples[-third:]

    def mean(values: list[float]) -> float:
        return statistics.fmean(values)

    rss = (mean([s.rss_mb for s in first]), mean([s.rss_mb for s in last]))
    fds = (mean([s.fds for s in first]), mean([s.fds for s in last]))
    tasks = (mean([s.tasks for s in first]), mean([s.tasks for s in last]))
    ok = (
        rss[1] <= rss[0] * RSS_TOLERANCE + RSS_SLACK_MB
        and fds[1] <= fds[0] + COUNT_SLACK
        and tasks[1] <= tasks[0] + COUNT_SLACK
    )
    summary = (
        f"first third → last third: RSS {rss[0]:.1f} → {rss[1]:.1f} MiB, "
        f"fds {fds[0]:.0f} → {fds[1]:.0f}, tasks {tasks[0]:.0f} → {tasks[1]:.0f}"
    )
    return ok, summary


def report(
    samples: list[Sample], outcomes: Counter[str], faults: list[str], minutes: float
) -> tuple[bool, str]:
    is_flat, summary = flat(samples)
    bad = unexpected(outcomes)
    passed = is_flat and not bad
    lines = [
        f"# Soak, {datetime.now():%Y-%m-%d %H:%M}: {minutes:g} min, {'PASS' if passed else 'FAIL'}",
        "",
        f"{summary}; unexpected outcomes: {dict(bad) or 'none'}.",
        "",
        "| t (s) | RSS (MiB) | open fds | tasks | requests | unexpected |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s.at_s:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.tasks} | {s.requests} | {s.unexpected} |"
        for s in samples
    ]
    lines += ["", "Outcomes by traffic kind:", ""]
    lines += [f"- `{key}`: {count}" for key, count in sorted(outcomes.items())]
    lines += ["", f"Faults injected ({len(faults)}): " + ", ".join(Counter(faults).keys()) + "."]
    return passed, "\n".join(lines) + "\n"


def soak(minutes: float, sample_s: float, clients: int, out: Path) -> bool:
    fleet = Fleet()
    fleet[FAULTED].respond(Reply(body=b'{"listings": []}'))
    fleet["file"].respond(Reply(generated_size=1 << 20))
    proxy = FaultProxy(fleet[FAULTED].port).start()
    redis = RedisServer()
    env = {"REDIS_URL": redis.url, "TRUSTED_PROXIES": "127.0.0.1/32", "RATE_LIMIT_MAX": "50"}
    config = {"services": {FAULTED: {"timeout_ms": 1000}}}
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    gateway = launch_gateway(workdir, {**fleet.urls(), FAULTED: proxy.url}, config, env)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    traffic = [Traffic(gateway.port, seed, outcomes, lock) for seed in range(clients)]
    faults = Faults(proxy, redis)
    samples: list[Sample] = []
    try:
        gateway.wait_ready()
        started = time.monotonic()
        for thread in [*traffic, faults]:
            thread.start()
        while time.monotonic() - started < minutes * 60:
            time.sleep(min(sample_s, max(minutes * 60 - (time.monotonic() - started), 0.1)))
            with lock:
                snapshot = Counter(outcomes)
            samples.append(sample(gateway, started, snapshot))
            s = samples[-1]
            print(f"{s.at_s:6.0f}s  RSS {s.rss_mb:6.1f} MiB  fds {s.fds:4d}  tasks {s.tasks:4d}"
                  f"  requests {s.requests:7d}  unexpected {s.unexpected}", flush=True)  # fmt: skip
    finally:
        for thread in [*traffic, faults]:
            thread.stopping.set()
        for thread in [*traffic, faults]:
            thread.join(10)
        gateway.stop()
        proxy.stop()
        redis.stop()
        fleet.stop()
    passed, text = report(samples, outcomes, faults.log, minutes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    default_out = REPO / "bench" / "results" / f"{datetime.now():%Y-%m-%d-%H%M}-soak.md"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    return 0 if soak(args.minutes, args.sample_s, args.clients, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
