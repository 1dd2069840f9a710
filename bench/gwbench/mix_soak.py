"""The mix soak: one gateway worker walks through many distinct users and addresses (default
1,000,000), a chunk of fresh users per wrk run, while its RSS is sampled over time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from gwbench import mix_traffic as traffic
from gwbench import tools
from gwbench.load import LoadSpec, measure
from gwbench.mix_report import Chunk, SoakReport
from gwbench.mix_stand import Stand
from gwbench.procs import tree_rss, trim_log
from gwbench.servers import ServerFailed

PASSES = 4  # a chunk's sequence: its users in a random order, this many times over
MAX_RUNS = 8  # wrk runs per chunk at most, each continuing where the last one stopped


@dataclass(frozen=True)
class SoakSettings:
    users: int
    chunk_users: int
    chunk_s: float
    connections: int
    sample_s: float


class RssSeries:
    """The worker's RSS every ``interval`` seconds, in a thread, from the soak's start."""

    def __init__(self, worker: list[psutil.Process], interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self.start = time.monotonic()
        self.points: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.start

    def take(self) -> int:
        rss = tree_rss(self.worker)
        self.points.append((self.now(), rss))
        return rss

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.take()


def worker_of(tree: list[psutil.Process]) -> list[psutil.Process]:
    """The serving worker: the gateway's child when it forks one, else the process itself."""
    return tree[1:] if len(tree) > 1 else tree


def run_soak(
    stand: Stand,
    found: tools.Tools,
    settings: SoakSettings,
    repo: Path,
    log: Callable[[str], None],
) -> SoakReport:
    report = SoakReport(
        "api-gateway production-mix soak " + datetime.now().strftime("%Y-%m-%d %H:%M"),
        tools.describe(found, repo),
        describe(settings, stand.layout.load_cpus is not None),
        [],
    )
    stand.start_upstreams(found.nginx)
    stand.start_gateway("gw-soak", {})
    stand.await_gateways(["gw-soak"])
    if "gw-soak" in stand.failures:
        report.error = stand.failures["gw-soak"]
        return report
    gateway = stand.servers["gw-soak"]
    series = RssSeries(worker_of(gateway.snapshot_tree()), settings.sample_s)
    series.take()
    series.thread.start()
    try:
        for first in range(0, settings.users, settings.chunk_users):
            count = min(settings.chunk_users, settings.users - first)
            chunk = run_chunk(stand, found, settings, series, first, count)
            report.chunks.append(chunk)
            log(
                f"users {first + count:>9,}: {chunk.rps:>8,.0f} req/s, "
                f"{chunk.cpu_us_per_request:.1f} µs/req, reached {chunk.reached:,}"
                f", errors {chunk.errors}, worker RSS {chunk.rss_end / 1048576:.1f} MiB"
            )
            if not gateway.alive():
                report.error = f"gateway died; log tail: {gateway.log_tail(500)}"
                break
    except (RuntimeError, OSError, ServerFailed) as exc:
        report.error = str(exc)
    finally:
        series.stop.set()
        series.thread.join()
    report.rss_series = series.points
    report.notes = [
        *stand.notes(),
        "RSS = resident set size of the gateway's serving worker (the process that handles "
        f"requests), sampled every {settings.sample_s:g} s and at each chunk's end.",
        f"Each chunk writes {settings.chunk_users:,} fresh users (tokens with new subjects, new "
        f"addresses), then wrk runs of {settings.chunk_s:g} s send them in a random order "
        f"(then again, up to {PASSES} times over) until every one of them has sent a request "
        f"(at most {MAX_RUNS} runs): 'distinct users reached' counts those that did.",
        "Request mix: " + traffic.describe_shares(),
    ]
    return report


def run_chunk(
    stand: Stand,
    found: tools.Tools,
    settings: SoakSettings,
    series: RssSeries,
    first: int,
    count: int,
) -> Chunk:
    work = stand.mix_dir
    users = traffic.write_users(work / "soak-users.txt", first, count)
    sequence = traffic.write_sequence(
        work / "soak-sequence.txt", "walk", count, length=count * PASSES, seed=first
    )
    gateway = stand.servers["gw-soak"]
    requests = errors = 0
    seconds = cpu_us = 0.0
    for _ in range(MAX_RUNS):  # until every user of the chunk has sent a request
        args = (str(users), str(stand.variants), str(sequence), str(requests))
        spec = LoadSpec(settings.chunk_s, settings.connections, 1, stand.layout.load_cpus, args)
        sample = measure(
            found.wrk,
            stand.lua,
            f"http://127.0.0.1:{gateway.port}/",
            [],
            spec,
            proxy=gateway.snapshot_tree(),
            upstream=stand.load_side("gw-soak"),
            proxy_core=None,
            load_core=None,
        )
        trim_log(gateway)
        series.worker = worker_of(gateway.snapshot_tree())  # a restarted worker is followed
        requests, errors = requests + sample.requests, errors + sample.errors
        cpu_us += (sample.cpu_us_per_request or 0.0) * sample.requests
        seconds += sample.requests / sample.rps if sample.rps else 0.0
        if requests >= count or not gateway.alive():
            break
    return Chunk(
        first_user=first,
        users=count,
        reached=min(requests, count),  # the sequence's first pass holds every user once
        requests=requests,
        rps=requests / seconds if seconds else 0.0,
        cpu_us_per_request=cpu_us / requests if requests else 0.0,
        errors=errors,
        rss_end=series.take(),
        elapsed_s=series.now(),
    )


def describe(settings: SoakSettings, pinned: bool) -> dict[str, str]:
    return {
        "command": "bench/mix.py --soak",
        "users": f"{settings.users:,} distinct users and addresses, {settings.chunk_users:,} "
        f"fresh ones per chunk, wrk runs of {settings.chunk_s:g} s until all have sent",
        "load": f"wrk + bench/mix.lua, 1 thread, {settings.connections} keep-alive connections",
        "gateway": "1 worker, default chain, TRUSTED_PROXIES=127.0.0.1/32, access log on",
        "pinning": "gateway on core 0; wrk and upstream nginx on core 1" if pinned else "off",
    }
