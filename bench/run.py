#!/usr/bin/env python3
"""Benchmark api-gateway against nginx on this machine, in one run.

    bench/run                 # full run (~7 min), writes bench/results/<date>-<time>.md,
                              # then the production mix (bench/mix.py, ~12 min, <...>-mix.md)
    bench/run --quick         # smoke setting: 1 repetition of ~1 s per case, small streams
    bench/run --no-mix        # without the production mix

See bench/README.md for what each row means and how it is measured.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mix
import psutil
from gwbench import fastify, tools
from gwbench.idle import idle_connections
from gwbench.load import LoadSpec, measure, write_lua
from gwbench.procs import Processes, Service, raise_fd_limit, trim_log
from gwbench.redis_server import redis_answers, start_redis
from gwbench.report import (
    Case,
    CaseResult,
    IdleRow,
    Report,
    StreamRow,
    disturbance_note,
    load_side_note,
    markdown,
    write_results,
)
from gwbench.servers import (
    BIG_PATH,
    SMALL_BODY,
    TICKET_PATH,
    Layout,
    ServerFailed,
    free_ports,
    http_get,
    mint_token,
    proxy_conf,
    require_ready,
    start_gateway,
    start_nginx,
    start_origin,
    upstream_conf,
)
from gwbench.streaming import MiB, transfer

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
GATEWAY_READY_S = 30.0

CASES = [
    Case("direct", "direct to upstream", "small", "upstream", TICKET_PATH, direct=True),
    Case("nginx", "nginx proxy_pass (reference)", "small", "nginx", TICKET_PATH, reference=True),
    Case("gateway", "gateway, 1 worker", "small", "gateway", TICKET_PATH),
    Case("gateway-redis", "gateway, Redis rate limit", "small", "gateway-redis", TICKET_PATH),
    Case("gateway-2w", "gateway, 2 workers", "small", "gateway-2w", TICKET_PATH),
    Case("direct-16k", "direct to upstream", "16 KiB", "upstream", BIG_PATH, direct=True),
    Case("nginx-16k", "nginx proxy_pass (reference)", "16 KiB", "nginx", BIG_PATH, reference=True),
    Case("gateway-16k", "gateway, 1 worker", "16 KiB", "gateway", BIG_PATH),
    Case(
        "fastify",
        "Fastify + http-proxy (seed stack)",
        "small",
        "fastify",
        TICKET_PATH,
        optional=True,
    ),
    Case(
        "fastify-full",
        "Fastify + http-proxy + jwt + rate-limit + logger",
        "small",
        "fastify-full",
        TICKET_PATH,
        optional=True,
    ),
]


@dataclass(frozen=True)
class Settings:
    reps: int
    duration_s: float
    warmup_s: float
    connections: int
    stream_bytes: int
    idle_connections: int
    pin: bool
    redis_url: str | None
    results_dir: Path
    work_dir: Path
    quick: bool
    fastify: bool
    mix: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick = args.quick
        return cls(
            reps=args.reps or (1 if quick else 5),
            duration_s=args.duration or (1.0 if quick else 6.0),
            warmup_s=0.0 if quick else 2.0,
            connections=args.connections,
            stream_bytes=int((args.stream_mib or (8 if quick else 1024)) * MiB),
            idle_connections=args.idle_connections or (200 if quick else 5000),
            pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
            redis_url=args.redis_url,
            results_dir=args.results_dir,
            work_dir=args.work_dir,
            quick=quick,
            fastify=not quick if args.fastify is None else args.fastify,
            mix=args.mix,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark api-gateway against nginx.")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke setting: 1 repetition of 1 s per case, 8 MiB streams, 200 idle connections",
    )
    parser.add_argument("--reps", type=int, help="repetitions per case (default 5)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 6)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--stream-mib", type=float, help="streaming size in MiB (default 1024)")
    parser.add_argument("--idle-connections", type=int, help="idle connections (default 5000)")
    parser.add_argument(
        "--redis-url",
        help="an existing Redis for the Redis-backed row (default: a private redis-server the "
        "bench starts on the load side's core, like the upstream; else 127.0.0.1:6379)",
    )
    parser.add_argument(
        "--fastify",
        action=argparse.BooleanOptionalAction,
        help="add the seed's Fastify stack rows (default: on, off with --quick)",
    )
    parser.add_argument(
        "--mix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the production mix (bench/mix.py) after the other phases (default: on)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--work-dir", type=Path, default=BENCH / ".work")
    return parser.parse_args(argv)


class Bench:
    """Starts the servers, runs the phases, collects a Report. ``procs`` owns every process."""

    def __init__(self, settings: Settings, found: tools.Tools) -> None:
        self.settings = settings
        self.tools = found
        self.procs = Processes()
        proxy, load = ("0", "1") if settings.pin else (None, None)
        self.layout = Layout(settings.work_dir, REPO, proxy, load)
        self.token = mint_token()
        self.servers: dict[str, Service] = {}
        self.failures: dict[str, str] = {}
        self.notes: list[str] = []
        self.facts: dict[str, str] = {}
        self.redis_url = settings.redis_url or ""

    # ---- servers
    def start_base(self) -> None:
        self.layout.prepare()
        nginx, work = self.tools.nginx, self.layout
        up_port, proxy_port = free_ports(2)
        self.servers["upstream"] = start_nginx(
            self.procs,
            work,
            nginx,
            "upstream",
            upstream_conf(work, up_port),
            up_port,
            work.load_cpus,
        )
        self.servers["origin"] = start_origin(self.procs, work)
        conf = proxy_conf(work, proxy_port, up_port, self.servers["origin"].port)
        self.servers["nginx"] = start_nginx(
            self.procs, work, nginx, "proxy", conf, proxy_port, work.proxy_cpus
        )

    def start_gateway(self, name: str, workers: int = 1, redis: bool = False) -> Service | None:
        try:
            service = start_gateway(
                self.procs,
                self.layout,
                name,
                workers=workers,
                upstream_port=self.servers["upstream"].port,
                files_port=self.servers["origin"].port,
                redis_url=self.redis_url if redis else None,
                # Several workers get every core, as in production; the load side then shares
                # core 1 with one of them, which is the point of that row.
                cpus=self.layout.proxy_cpus if workers == 1 or not self.settings.pin else "0,1",
            )
        except OSError as exc:
            self.failures[name] = f"cannot start api-gateway: {exc}"
            return None
        self.servers[name] = service
        return service

    def start_redis(self) -> str:
        service, url = start_redis(self.procs, self.layout)
        if service is not None:
            self.servers["redis"] = service
        return url

    def start_fastify(self) -> list[str]:
        try:
            target = fastify.prepare(self.layout)
        except (fastify.FastifyUnavailable, OSError) as exc:
            self.failures["fastify"] = self.failures["fastify-full"] = f"skipped: {exc}"
            return []
        self.facts["fastify"] = fastify.version(target)
        for name in ("fastify", "fastify-full"):
            self.servers[name] = fastify.start(
                self.procs,
                self.layout,
                target,
                name,
                policies=name == "fastify-full",
                upstream_port=self.servers["upstream"].port,
                cpus=self.layout.proxy_cpus,
            )
        return ["fastify", "fastify-full"]

    def await_proxies(self, names: list[str]) -> None:
        for name in names:
            service = self.servers.get(name)
            if service is None:
                continue
            try:
                require_ready(service, "/live", GATEWAY_READY_S)
                self.check_route(service)
            except ServerFailed as exc:
                self.failures[name] = str(exc)
                self.procs.stop(service)
                del self.servers[name]

    def check_route(self, service: Service) -> None:
        """The protected route must answer 200 with the upstream's body before we load it."""
        try:
            status, body = http_get(service.port, TICKET_PATH, self.auth_header())
        except OSError as exc:
            raise ServerFailed(f"{service.name}: GET {TICKET_PATH} failed: {exc}") from exc
        if status != 200 or body != SMALL_BODY.encode():
            raise ServerFailed(
                f"{service.name}: GET {TICKET_PATH} with a valid token answered "
                f"{status} {body[:300]!r}"
            )
        service.snapshot_tree()  # after the first request: workers have forked by now

    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # ---- throughput phase
    def throughput(self) -> list[CaseResult]:
        gateways = ["gateway", "gateway-2w"]
        self.start_gateway("gateway")
        self.start_gateway("gateway-2w", workers=2)
        self.redis_url = self.settings.redis_url or self.start_redis()
        if redis_answers(self.redis_url):
            self.start_gateway("gateway-redis", redis=True)
            gateways.append("gateway-redis")
        else:
            self.failures["gateway-redis"] = f"Redis not reachable at {self.redis_url}"
        if self.settings.fastify:
            gateways += self.start_fastify()
        self.await_proxies(gateways)
        cases = [c for c in CASES if self.settings.fastify or not c.optional]
        results = [CaseResult(case) for case in cases]
        for result in results:
            result.error = self.failures.get(result.case.target)
        runnable = [r for r in results if r.error is None]
        if self.settings.warmup_s:
            self.log("warming up")
            for result in runnable:
                self.sample(result, self.settings.warmup_s, keep=False)
        for rep in range(self.settings.reps):
            order = runnable[rep % len(runnable) :] + runnable[: rep % len(runnable)]
            for result in order:  # interleaved: every case once per repetition, rotating start
                self.sample(result, self.settings.duration_s, keep=True)
                self.log(
                    f"rep {rep + 1}/{self.settings.reps} {result.case.key:14} " + summary(result)
                )
        for name in gateways:
            if name in self.servers:
                self.procs.stop(self.servers.pop(name))
        return results

    def sample(self, result: CaseResult, duration_s: float, keep: bool) -> None:
        if result.error is not None:
            return
        case = result.case
        target = self.servers[case.target]
        if not target.alive():
            result.error = f"{target.name} died; log tail: {target.log_tail(500)}"
            return
        spec = LoadSpec(duration_s, self.settings.connections, 1, self.layout.load_cpus)
        proxy = [] if case.direct else target.snapshot_tree()  # a restarted worker counts too
        try:
            sample = measure(
                self.tools.wrk,
                self.lua,
                f"http://127.0.0.1:{target.port}{case.path}",
                [f"Authorization: Bearer {self.token}"],
                spec,
                proxy=proxy,
                upstream=self.servers["upstream"].tree + self.backing(case),
                proxy_core=0 if self.settings.pin else None,
                load_core=1 if self.settings.pin else None,
            )
        except (RuntimeError, OSError) as exc:
            result.error = str(exc)
            return
        if keep:
            result.samples.append(sample)
        if sample.errors > max(10, sample.requests // 100):
            result.error = (
                f"{sample.errors} errors ({sample.error_kinds}) in {sample.requests} requests"
            )
        trim_log(target)

    def backing(self, case: Case) -> list[psutil.Process]:
        """The private Redis's process, counted with the load side for the Redis-backed row."""
        redis = self.servers.get("redis")
        return redis.tree if redis is not None and case.target == "gateway-redis" else []

    # ---- streaming and idle phases
    def streaming(self) -> list[StreamRow]:
        rows = []
        targets: list[tuple[str, Callable[[], Service | None]]] = [
            ("direct to origin", lambda: self.servers["origin"]),
            ("nginx proxy_pass", lambda: self.servers["nginx"]),
            ("gateway, 1 worker", lambda: self.fresh_gateway("gateway-stream")),
        ]
        for label, get in targets:
            service = get()
            if service is None:
                rows.append(StreamRow(label, [], self.failures.get("gateway-stream")))
                continue
            tree = [] if service.name == "origin" else service.tree
            row = StreamRow(label, [])
            for direction in ("upload", "download"):
                row.transfers.append(
                    transfer(
                        self.tools.curl,
                        direction,
                        service.port,
                        self.settings.stream_bytes,
                        self.layout.work,
                        self.token,
                        tree,
                        self.layout.load_cpus,
                    )
                )
                self.log(
                    f"stream {label}: {direction} {row.transfers[-1].mib_per_s:,.0f} MiB/s"
                    f" {row.transfers[-1].error or ''}"
                )
            rows.append(row)
            if service.name.startswith("gateway"):
                self.procs.stop(self.servers.pop(service.name))
        return rows

    def idle(self) -> list[IdleRow]:
        rows = []
        count = self.settings.idle_connections
        for label, name in (("nginx proxy_pass", "nginx"), ("gateway, 1 worker", "gateway-idle")):
            service = self.servers[name] if name == "nginx" else self.fresh_gateway(name)
            if service is None:
                rows.append(IdleRow(label, None, self.failures.get(name)))
                continue
            result = idle_connections(service.port, TICKET_PATH, self.token, count, service.tree)
            rows.append(IdleRow(label, result))
            self.log(
                f"idle {label}: {result.bytes_per_connection / 1024:.1f} KiB/connection "
                f"{result.error or ''}"
            )
            if name != "nginx":
                self.procs.stop(self.servers.pop(name))
        return rows

    def fresh_gateway(self, name: str) -> Service | None:
        if self.start_gateway(name) is None:
            return None
        self.await_proxies([name])
        return self.servers.get(name)

    def run(self) -> Report:
        self.start_base()
        self.lua = write_lua(self.layout.work)
        cases = self.throughput()
        streams = self.streaming()
        idle = self.idle()
        for note in (disturbance_note(cases), load_side_note(cases)):
            if note:
                self.notes.append(note)
        return Report(
            "api-gateway benchmark " + datetime.now().strftime("%Y-%m-%d %H:%M"),
            {**tools.describe(self.tools, REPO), **self.facts},
            self.describe_settings(),
            cases,
            streams,
            idle,
            self.notes + method_notes(self.settings),
        )

    def describe_settings(self) -> dict[str, str]:
        s = self.settings
        pinning = (
            "proxy (nginx proxy or a 1-worker gateway) on core 0, the 2-worker gateway on "
            "cores 0 and 1; wrk, upstream "
            "nginx, origin and curl on core 1"
            if s.pin
            else "off"
        )
        return {
            "command": "bench/run " + " ".join(sys.argv[1:]),
            "load": f"wrk, 1 thread, {s.connections} keep-alive connections, "
            f"{s.duration_s:.0f} s per run, {s.reps} interleaved repetitions "
            f"(medians shown), {s.warmup_s:.0f} s warm-up per case",
            "pinning": pinning,
            "streaming size": f"{s.stream_bytes / MiB:,.0f} MiB",
            "idle connections": f"{s.idle_connections:,} (half sent one request)",
        }

    @staticmethod
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def method_notes(settings: Settings) -> list[str]:
    return [
        "CPU µs/req = CPU time (user+system, /proc) of the proxy's whole process tree during "
        "the run ÷ requests. Peak RSS = highest sum of RSS over that tree, sampled every 100 ms.",
        "core 0/1 busy = share of that core not idle during the run (/proc/stat). "
        "Bottleneck: 'proxy' when core 0 ≥ 90 %; 'load side' when only core 1 is. "
        "other CPU = busy core-seconds not spent by the proxy, wrk or the upstream, per second "
        "(the bench's own samplers, kernel threads, anything else running on the machine): "
        "well above ~5 % means the run was disturbed.",
        "x nginx compares with the nginx proxy_pass row of the same body size in this same run.",
        redis_note(settings),
    ]


def redis_note(settings: Settings) -> str:
    if settings.redis_url:
        return (
            f"Redis-backed row: the Redis at {settings.redis_url}, not pinned by the bench; "
            "its CPU is not counted in CPU µs/req."
        )
    return (
        "Redis-backed row: a private redis-server started by the bench on core 1 (the load "
        "side's core), counted with the load side, not in CPU µs/req."
    )


def summary(result: CaseResult) -> str:
    if result.error or not result.samples:
        return f"failed: {(result.error or '').strip().splitlines()[:1]}"
    last = result.samples[-1]
    cpu = f"{last.cpu_us_per_request:.1f} µs/req" if last.cpu_us_per_request else ""
    return (
        f"{last.rps:>9,.0f} req/s p99 {last.p99_ms:.2f} ms {cpu} errors {last.errors} "
        f"other CPU {last.other_cpu_share * 100:.0f} %"
    )


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_args(parse_args(argv))
    signal.signal(signal.SIGTERM, on_sigterm)
    raise_fd_limit(2 * settings.idle_connections + 4096)
    bench = Bench(settings, tools.ensure_tools())
    try:
        report = bench.run()
    except KeyboardInterrupt:
        print("interrupted; stopping every process the bench started", file=sys.stderr)
        return 130
    except ServerFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.procs.stop_all()
    text = markdown(report)
    print("\n" + text)
    path = write_results(text, settings.results_dir)
    print(f"results written to {path}")
    failed = [r.case.key for r in report.cases if not r.ok and not r.case.optional]
    code = 1 if failed else 0
    return max(code, run_mix(settings)) if settings.mix else code


def run_mix(settings: Settings) -> int:
    """The production mix (bench/mix.py, its own report) after the other phases; its servers
    are started afresh, its files go under <work-dir>/mix."""
    argv = ["--results-dir", str(settings.results_dir)]
    argv += ["--work-dir", str(settings.work_dir / "mix")]
    if settings.quick:
        argv.append("--quick")
    if not settings.pin:
        argv.append("--no-pin")
    if settings.redis_url:
        argv += ["--redis-url", settings.redis_url]
    return mix.main(argv)


if __name__ == "__main__":
    sys.exit(main())
