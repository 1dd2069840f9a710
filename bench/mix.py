#!/usr/bin/env python3
"""The production mix: many users, each behind its own address, over the default chain.

    .venv/bin/python bench/mix.py            # ~10 min; writes bench/results/<date>-<time>-mix.md
    .venv/bin/python bench/mix.py --quick    # smoke setting: 2,000 users, 1 s per case
    .venv/bin/python bench/mix.py --soak     # 5-8 min, 1,000,000 users; <date>-<time>-mix-soak.md

See bench/README.md ("Production mix") for what each row means and how it is measured.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
from gwbench import mix_traffic as traffic
from gwbench import tools, turns
from gwbench.load import LoadSpec, Sample, measure, wrk_argv
from gwbench.mix_cases import GATEWAYS, ON_REQUEST, cases, chosen, method_notes
from gwbench.mix_report import MixReport, mix_markdown, soak_markdown
from gwbench.mix_soak import SoakSettings, run_soak
from gwbench.mix_stand import Stand
from gwbench.procs import tree_rss, trim_log
from gwbench.report import CaseResult, disturbance_note, load_side_note, write_results
from gwbench.servers import ServerFailed

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WARM_UP_MAX_S = 60.0
# Turns of 40 ms: a 12-case rotation takes about half a second, shorter than the host's swings
# in speed; 200 ms turns read a control twice as far from 1.00 (bench/README.md, "Turns").
TURN_MS = 40.0
TURNS_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Settings:
    users: int
    reps: int
    duration_s: float
    warmup_s: float
    warmup_fixed_s: float | None
    connections: int
    pin: bool
    redis_url: str | None
    results_dir: Path
    work_dir: Path
    quick: bool
    command: str
    cases: tuple[str, ...] = ()  # only these (and what they are compared with); () the usual set
    turn_ms: float | None = None  # cases take turns of this length instead of runs one by one

    @classmethod
    def from_args(cls, args: argparse.Namespace, argv: list[str]) -> Settings:
        quick = args.quick
        return cls(
            users=args.users or (2000 if quick else 100_000),
            reps=args.reps or (1 if quick else 7),
            duration_s=args.duration or (1.0 if quick else 4.0),
            warmup_s=0.0 if quick else 5.0,
            warmup_fixed_s=args.warm_up,
            connections=args.connections,
            pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
            redis_url=args.redis_url,
            results_dir=args.results_dir,
            work_dir=args.work_dir,
            quick=quick,
            command="bench/mix.py " + " ".join(argv),
            cases=tuple(key.strip() for key in (args.cases or "").split(",") if key.strip()),
            turn_ms=args.turns or None,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The gateway under a production mix of users.")
    parser.add_argument("--quick", action="store_true", help="2,000 users, 1 run of 1 s per case")
    parser.add_argument("--soak", action="store_true", help="the 1,000,000-user RSS walk instead")
    parser.add_argument("--users", type=int, help="distinct users (100,000; soak: 1,000,000)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions per case (7)")
    parser.add_argument("--duration", type=float, help="seconds per case per repetition (4)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument(
        "--warm-up",
        type=float,
        metavar="S",
        help="S seconds of warm-up per case instead of one pass through its sequence",
    )
    parser.add_argument(
        "--cases",
        metavar="KEYS",
        help="only these cases, comma-separated (e.g. gw-zipf,gw-trace-0.01), with each one's "
        "baseline and nginx row; gw-trace-0 and gw-idle-thread run only when named",
    )
    parser.add_argument(
        "--turns",
        type=float,
        metavar="MS",
        default=TURN_MS,
        help=f"each repetition starts every case's wrk at once and runs them one at a time in "
        f"turns of MS milliseconds ({TURN_MS:.0f}); 0: each case's runs one after another",
    )
    parser.add_argument("--chunk-users", type=int, help="soak: fresh users per wrk run (100,000)")
    parser.add_argument("--chunk-s", type=float, help="soak: seconds per wrk run (10)")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--work-dir", type=Path, default=BENCH / ".work")
    return parser.parse_args(argv)


class Mix:
    """Generates the traffic, starts every server once, runs the interleaved cases."""

    def __init__(self, settings: Settings, found: tools.Tools) -> None:
        self.settings = settings
        self.tools = found
        self.stand = Stand(settings.work_dir, REPO, settings.pin, settings.redis_url)
        self.files: dict[str, tuple[Path, Path]] = {}  # traffic -> (users file, sequence file)
        self.offsets: dict[str, int] = {}  # case -> where its next run starts in its sequence
        self.end_rss: dict[str, int] = {}
        every = cases(settings.users)
        if settings.cases:
            self.cases = chosen(every, list(settings.cases))
        else:
            self.cases = [case for case in every if case.key not in ON_REQUEST]

    def prepare_traffic(self) -> None:
        work, users = self.stand.mix_dir, self.settings.users
        self.log(f"writing {users:,} tokens and addresses, and the request sequences")
        everyone = traffic.write_users(work / f"users-{users}.txt", 0, users)
        self.files["single"] = (
            traffic.write_users(work / "users-1.txt", 0, 1),
            traffic.write_sequence(work / "sequence-single.txt", "uniform", 1),
        )
        for kind in ("zipf", "uniform"):
            sequence = traffic.write_sequence(work / f"sequence-{kind}-{users}.txt", kind, users)
            self.files[kind] = (everyone, sequence)

    def start(self) -> None:
        stand = self.stand
        stand.start_upstreams(self.tools.nginx)
        redis_url = stand.start_redis()
        sink = stand.start_sink()
        targets = {case.target for case in self.cases}
        gateways = [name for name in GATEWAYS if name in targets]
        for name in gateways:
            extra = GATEWAYS[name]
            env = dict(extra)
            if name.startswith("gw-trace"):
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink.port}"
            redis = redis_url if "redis" in name else None
            if "redis" in name and redis is None:
                stand.failures[name] = "Redis not reachable"
                continue
            stand.start_gateway(name, env, redis)
        stand.await_gateways(gateways)

    def run(self) -> MixReport:
        self.prepare_traffic()
        self.start()
        results = [CaseResult(case) for case in self.cases]
        for result in results:
            result.error = self.stand.failures.get(result.case.target)
        runnable = [r for r in results if r.error is None]
        fixed = self.settings.warmup_fixed_s
        if fixed:
            self.log(f"warming up: {fixed:.0f} s per case")
            for result in runnable:
                self.sample(result, fixed, keep=False)
        elif self.settings.warmup_s and fixed is None:
            self.log("warming up: each case walks its request sequence once")
            for result in runnable:
                self.warm_up(result)
        for rep in range(self.settings.reps):
            if self.settings.turn_ms:
                self.take_turns(runnable, rep)
                for result in runnable:
                    self.show(rep, result)
                continue
            order = runnable[rep % len(runnable) :] + runnable[: rep % len(runnable)]
            for result in order:  # interleaved: every case once per repetition, rotating start
                self.sample(result, self.settings.duration_s, keep=True)
                self.show(rep, result)
        notes = [note for note in (disturbance_note(results), load_side_note(results)) if note]
        notes += self.stand.notes() + method_notes()
        return MixReport(
            "api-gateway production mix " + datetime.now().strftime("%Y-%m-%d %H:%M"),
            tools.describe(self.tools, REPO),
            self.describe_settings(),
            results,
            notes=notes,
            end_rss=self.end_rss,
            shares=[traffic.describe_shares()],
        )

    def show(self, rep: int, result: CaseResult) -> None:
        last = result.samples[-1] if result.samples and result.error is None else None
        shown = (
            f"{last.rps:>8,.0f} req/s {last.cpu_us_per_request or 0:6.1f} µs/req "
            f"errors {last.errors}" + (f" ({last.error_kinds})" if last.errors else "")
            if last
            else f"failed: {(result.error or '')[:200]}"
        )
        self.log(f"rep {rep + 1}/{self.settings.reps} {result.case.key:17} {shown}")

    def take_turns(self, results: list[CaseResult], rep: int) -> None:
        """One repetition in turns (gwbench.turns): every case's wrk at once, one running at a
        time, each case ``duration_s`` in all; the conductor sits on the load side's core."""
        live = [result for result in results if result.error is None]
        runners = [self.runner(result, len(live)) for result in live]
        before = os.sched_getaffinity(0)
        if self.settings.pin:
            os.sched_setaffinity(0, {1})
        try:
            turns.run_block(
                runners, self.settings.duration_s, (self.settings.turn_ms or 0) / 1000, rep
            )
        finally:
            os.sched_setaffinity(0, before)
        for result, runner in zip(live, runners, strict=True):
            try:
                sample = turns.runner_sample(runner)
            except RuntimeError as exc:
                result.error = str(exc)
                continue
            self.keep(result, sample, runner.proxy)

    def runner(self, result: CaseResult, cases: int) -> turns.Runner:
        case, stand = result.case, self.stand
        target = stand.servers[case.target]
        users, sequence = self.files[case.path]
        offset = self.offsets.get(case.key, 0)
        args = (str(users), str(stand.variants), str(sequence), str(offset))
        # wrk's own clock is not what ends a turn-taking run (SIGINT does): room for every turn
        longest = self.settings.duration_s * cases * 3 + 60
        # A wrk waits for the others' turns with requests in flight: in the first round, while
        # each of the others loads its users (about half a second each), for several seconds.
        spec = LoadSpec(
            longest, self.settings.connections, 1, stand.layout.load_cpus, args, TURNS_TIMEOUT_S
        )
        url = f"http://127.0.0.1:{target.port}/"
        return turns.Runner(
            case.key,
            wrk_argv(self.tools.wrk, stand.lua, url, [], spec),
            [] if case.direct else target.snapshot_tree(),
            stand.load_side(case.target),
        )

    def keep(self, result: CaseResult, sample: Sample, proxy: list[psutil.Process]) -> None:
        self.offsets[result.case.key] = self.offsets.get(result.case.key, 0) + sample.requests
        result.samples.append(sample)
        if proxy:
            self.end_rss[result.case.key] = tree_rss(proxy)
        self.check(result, sample)

    def check(self, result: CaseResult, sample: Sample) -> None:
        """More than 1 % errors (and at least 10) fails the case; the proxy's log is trimmed."""
        if sample.errors > max(10, sample.requests // 100):
            result.error = f"{sample.errors} errors ({sample.error_kinds}) in {sample.requests}"
        trim_log(self.stand.servers[result.case.target])

    def warm_up(self, result: CaseResult) -> None:
        """Runs of ``warmup_s`` until the case has sent its whole sequence once (at most
        ``WARM_UP_MAX_S``): every case is then measured over the same part of its traffic, each
        user's first request behind it. By time alone, a slower case would be measured over
        more of its first pass, where every user is new, than a faster one, and its ratio to
        another case would mix up speed and traffic. The first request's cost is measured
        alone, by ``bench/instructions.py --users`` (a new user on every request)."""
        deadline = time.monotonic() + WARM_UP_MAX_S
        while result.error is None and time.monotonic() < deadline:
            self.sample(result, self.settings.warmup_s, keep=False)
            if self.offsets.get(result.case.key, 0) >= traffic.SEQUENCE_LENGTH:
                return

    def sample(self, result: CaseResult, duration_s: float, keep: bool) -> None:
        if result.error is not None:
            return
        case, stand = result.case, self.stand
        target = stand.servers[case.target]
        if not target.alive():
            result.error = f"{target.name} died; log tail: {target.log_tail(500)}"
            return
        users, sequence = self.files[case.path]
        offset = self.offsets.get(case.key, 0)
        args = (str(users), str(stand.variants), str(sequence), str(offset))
        spec = LoadSpec(duration_s, self.settings.connections, 1, stand.layout.load_cpus, args)
        proxy = [] if case.direct else target.snapshot_tree()
        try:
            sample = measure(
                self.tools.wrk,
                stand.lua,
                f"http://127.0.0.1:{target.port}/",
                [],
                spec,
                proxy=proxy,
                upstream=stand.load_side(case.target),
                proxy_core=0 if self.settings.pin else None,
                load_core=1 if self.settings.pin else None,
            )
        except (RuntimeError, OSError) as exc:
            result.error = str(exc)
            return
        if keep:  # the next run continues the sequence (keep moves the offset)
            self.keep(result, sample, proxy)
            return
        self.offsets[case.key] = offset + sample.requests
        result.warm.append(sample)
        self.check(result, sample)

    def describe_settings(self) -> dict[str, str]:
        s = self.settings
        return {
            "command": s.command,
            "users": f"{s.users:,} distinct users, each with its own HS256 token and its own "
            f"client address (X-Forwarded-For from the trusted 127.0.0.1); Zipf s={traffic.ZIPF_S}"
            f" or uniform; {traffic.TENANTS} tenants",
            "load": f"wrk + bench/mix.lua, 1 thread, {s.connections} keep-alive connections, "
            + self.describe_runs()
            + self.describe_warm_up(),
            "pinning": "proxy under test on core 0; wrk, upstream nginx, Redis and the OTLP sink "
            "on core 1"
            if s.pin
            else "off",
        }

    def describe_runs(self) -> str:
        s = self.settings
        if s.turn_ms:
            return (
                f"{s.reps} repetitions (medians shown); in each, every case's wrk started at once "
                f"and run one at a time in turns of {s.turn_ms:.0f} ms, {s.duration_s:.0f} s of "
                "turns per case (bench/gwbench/turns.py). p99 is from the warm-up runs (one "
                "case at a time, continuous load, each user's first requests among them): in "
                "turns a request in flight waits for its wrk's next turn, "
            )
        return f"{s.duration_s:.0f} s per run, {s.reps} interleaved repetitions (medians shown), "

    def describe_warm_up(self) -> str:
        s = self.settings
        if s.warmup_fixed_s is not None:
            return f"{s.warmup_fixed_s:.0f} s warm-up per case (--warm-up)"
        if not s.warmup_s:
            return "no warm-up"
        return (
            f"warm-up per case: runs of {s.warmup_s:.0f} s until its sequence of "
            f"{traffic.SEQUENCE_LENGTH:,} requests has been sent once (at most "
            f"{WARM_UP_MAX_S:.0f} s)"
        )

    @staticmethod
    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    settings = Settings.from_args(args, argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    found = tools.ensure_tools()
    if args.soak:
        return soak(args, settings, found)
    try:
        mix = Mix(settings, found)
    except ValueError as exc:  # --cases naming no case
        print(f"bench mix: {exc}", file=sys.stderr)
        return 2
    try:
        report = mix.run()
    except KeyboardInterrupt:
        print("interrupted; stopping every process the bench started", file=sys.stderr)
        return 130
    except ServerFailed as exc:
        print(f"bench mix: {exc}", file=sys.stderr)
        return 2
    finally:
        mix.stand.procs.stop_all()
    text = mix_markdown(report)
    print("\n" + text)
    print(f"results written to {write_results(text, settings.results_dir, '-mix')}")
    return 0 if all(result.ok for result in report.cases) else 1


def soak(args: argparse.Namespace, settings: Settings, found: tools.Tools) -> int:
    chosen = SoakSettings(
        users=args.users or (4000 if settings.quick else 1_000_000),
        chunk_users=args.chunk_users or (2000 if settings.quick else 100_000),
        chunk_s=args.chunk_s or (1.0 if settings.quick else 10.0),
        connections=settings.connections,
        sample_s=0.5 if settings.quick else 2.0,
    )
    stand = Stand(settings.work_dir, REPO, settings.pin, None)
    try:
        report = run_soak(stand, found, chosen, REPO, Mix.log)
    except KeyboardInterrupt:
        print("interrupted; stopping every process the bench started", file=sys.stderr)
        return 130
    except ServerFailed as exc:
        print(f"bench mix soak: {exc}", file=sys.stderr)
        return 2
    finally:
        stand.procs.stop_all()
    text = soak_markdown(report)
    print("\n" + text)
    print(f"results written to {write_results(text, settings.results_dir, '-mix-soak')}")
    return 1 if report.error else 0


if __name__ == "__main__":
    sys.exit(main())
