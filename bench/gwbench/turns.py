"""Turn-taking load: one wrk per case, all started together, run one at a time in short turns.

A busy host changes speed from one second to the next (a neighbour's load, not ours), so two
cases measured a few seconds apart differ by more than a target's margin. Here every case's
wrk is its own process, stopped (SIGSTOP) but for its turn of tens of milliseconds; each round
gives every case one turn, so each case is measured in the same seconds as every other one, and
a slow second is shared out among them.

Only the load generators are stopped, never a proxy: a stopped proxy would meet a backlog on
waking, which is not the traffic being measured. After each turn the proxy finishes what its
wrk had in flight (the turn waits until its CPU time stands still), then the next turn starts.
Each case is charged the CPU its proxy used within its own turns (the scheduler's exact
run time, /proc/<pid>/task/<tid>/schedstat), so a gateway's once-a-second timers count only
while its own traffic runs, as in a plain run; its requests are wrk's count at the end.

wrk's latencies are not kept: a request in flight when its wrk stops waits for the next turn.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import psutil

from gwbench.load import Sample, wrk_summary
from gwbench.procs import tree_cpu_split, tree_rss

SETTLE_POLL_S = 0.0005
SETTLE_MAX_S = 0.25
FIRST_TURN_MAX_S = 5.0
FINISH_MAX_S = 30.0
FINISH_POLL_S = 0.1
LAUNCH_MAX_S = 10.0


def runtime_ns(tree: Sequence[psutil.Process]) -> int:
    """Nanoseconds on a CPU so far, summed over every thread of the given processes."""
    total = 0
    for proc in tree:
        base = f"/proc/{proc.pid}/task"
        try:
            tids = os.listdir(base)
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"{base}/{tid}/schedstat", "rb") as stat:
                    total += int(stat.read().split(maxsplit=1)[0])
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
    return total


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    rows = psutil.cpu_times(percpu=True)
    return sum(sum(row) - row.idle - getattr(row, "iowait", 0.0) for row in rows)


class Mark(NamedTuple):
    """Counters read at a turn's start or end; their differences, summed, are what a runner's
    turns used."""

    wall_s: float
    proxy_ns: float  # the proxy's threads' run time (schedstat)
    proxy_user_s: float
    proxy_system_s: float
    upstream_s: float
    wrk_s: float
    machine_busy_s: float
    conductor_s: float  # the bench's own CPU: not the host's noise

    def minus(self, other: Mark) -> Mark:
        return Mark(*(a - b for a, b in zip(self, other, strict=True)))

    def plus(self, other: Mark) -> Mark:
        return Mark(*(a + b for a, b in zip(self, other, strict=True)))


NOTHING = Mark(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class Runner:
    """One case's wrk and what its turns used."""

    key: str
    argv: list[str]
    proxy: list[psutil.Process]
    upstream: list[psutil.Process]
    popen: subprocess.Popen[str] | None = None
    wrk: psutil.Process | None = None
    spent: Mark = NOTHING  # summed over its turns; ``spent.wall_s`` is its share of time
    output: str = ""
    stderr: str = ""
    returncode: int | None = None
    started: bool = False
    windows: list[tuple[float, float]] = field(default_factory=list)  # each turn's start, end

    def launch(self) -> None:
        """Start the wrk stopped before it execs, so it sends nothing until its first turn (a
        shell that stops itself: a stop in ``preexec_fn`` would hang Popen, which waits for the
        exec)."""
        self.popen = subprocess.Popen(
            ["sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *self.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.wrk = psutil.Process(self.popen.pid)
        # Until the shell has stopped itself, a turn's SIGCONT could come first and be lost.
        deadline = time.monotonic() + LAUNCH_MAX_S
        while self.wrk.status() != psutil.STATUS_STOPPED:
            if time.monotonic() > deadline or self.popen.poll() is not None:
                raise RuntimeError(f"{self.key}: wrk did not start ({self.argv[0]})")
            time.sleep(0.001)

    @property
    def turns(self) -> int:
        return len(self.windows)

    def mark(self) -> Mark:
        user, system = tree_cpu_split(self.proxy)
        wrk = tree_cpu_split([self.wrk]) if self.wrk else (0.0, 0.0)
        return Mark(
            time.monotonic(),
            float(runtime_ns(self.proxy)),
            user,
            system,
            sum(tree_cpu_split(self.upstream)),
            sum(wrk),
            busy_seconds(),
            time.process_time(),
        )

    def charge(self, before: Mark, after: Mark) -> None:
        self.windows.append((before.wall_s, after.wall_s))
        self.spent = self.spent.plus(after.minus(before))

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def settle(self) -> None:
        """Wait until the proxy has answered what the stopped wrk had in flight."""
        deadline = time.monotonic() + SETTLE_MAX_S
        last = runtime_ns(self.proxy)
        while time.monotonic() < deadline:
            time.sleep(SETTLE_POLL_S)
            now = runtime_ns(self.proxy)
            if now == last:
                return
            last = now

    def turn(self, length_s: float) -> None:
        before = self.mark()
        self.signal(signal.SIGCONT)
        if not self.started:
            # wrk first loads its script and the users (half a second for 100,000): that is not
            # load, so the turn's time counts from its first write to a socket
            deadline = time.monotonic() + FIRST_TURN_MAX_S
            while self.written() == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            before = before._replace(wall_s=time.monotonic())
            self.started = True
        time.sleep(length_s)
        self.signal(signal.SIGSTOP)
        self.settle()
        self.charge(before, self.mark())

    def written(self) -> int:
        """Bytes wrk has written so far (its requests; it writes nothing else until its end)."""
        try:
            with open(f"/proc/{self.popen.pid if self.popen else 0}/io", "rb") as io:
                for line in io:
                    if line.startswith(b"wchar:"):
                        return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0

    def finish(self) -> None:
        """The last turn: wrk is told to stop (SIGINT), runs until it has printed its summary.

        The signal is sent again until wrk exits: whichever of its threads takes it stops, but
        only the main thread's taking it ends the main thread's sleep, which then prints the
        summary; once the load thread has stopped, the main thread is the only one left."""
        before = self.mark()
        assert self.popen is not None
        self.signal(signal.SIGCONT)
        deadline = time.monotonic() + FINISH_MAX_S
        while self.popen.poll() is None and time.monotonic() < deadline:
            self.signal(signal.SIGINT)
            try:
                self.popen.wait(FINISH_POLL_S)
            except subprocess.TimeoutExpired:
                continue
        if self.popen.poll() is None:
            self.popen.kill()
        self.output, self.stderr = self.popen.communicate()  # a summary is far below a pipe's size
        self.returncode = self.popen.returncode
        self.settle()
        after = self.mark()
        # wrk has exited, so its CPU in this last turn (printing its summary) is not read
        self.charge(before, after._replace(wrk_s=before.wrk_s))

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate()


def run_block(
    runners: Sequence[Runner],
    active_s: float,
    turn_s: float,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> None:
    """Every runner's wrk started stopped; rounds of turns of ``turn_s``, one per runner in an
    order drawn anew each round, until each runner has had ``active_s`` seconds; then each
    one's last turn. A new order each round: a turn starts on the caches its predecessor left
    (the gateways share their code's pages), so no case always follows the same one. The
    conductor itself should sit on the load side's core."""
    order = list(runners)
    shuffle = random.Random(seed).shuffle
    try:
        for runner in order:
            runner.launch()
        while any(runner.spent.wall_s < active_s for runner in order):
            shuffle(order)
            for runner in order:
                if runner.spent.wall_s < active_s and runner.popen and runner.popen.poll() is None:
                    runner.turn(turn_s)
            if all(runner.popen and runner.popen.poll() is not None for runner in order):
                break
        for runner in order:
            runner.finish()
    finally:
        for runner in order:
            runner.kill()
    if log:
        log(", ".join(f"{runner.key} {runner.turns} turns" for runner in order))


def runner_sample(runner: Runner) -> Sample:
    """What one runner's turns in a block come to, as one run of the case."""
    raw = wrk_summary(runner.returncode, runner.output, runner.stderr)
    used = runner.spent
    requests, active = int(raw["requests"]), used.wall_s
    kinds = {key: int(raw[key]) for key in ("connect", "read", "write", "status", "timeout")}
    cpu_s = used.proxy_ns / 1e9
    ticks = used.proxy_user_s + used.proxy_system_s
    kernel_s = cpu_s * used.proxy_system_s / ticks if ticks else 0.0
    ours = cpu_s + used.upstream_s + used.wrk_s + used.conductor_s
    nan = float("nan")  # latencies are not measured in turns (see the module's docstring)
    return Sample(
        rps=requests / active if active else 0.0,
        requests=requests,
        p50_ms=nan,
        p99_ms=nan,
        p999_ms=nan,
        errors=sum(kinds.values()),
        error_kinds=", ".join(f"{key} {count}" for key, count in kinds.items() if count),
        cpu_us_per_request=cpu_s * 1e6 / requests if runner.proxy and requests else None,
        kernel_us_per_request=kernel_s * 1e6 / requests if runner.proxy and requests else None,
        peak_rss=tree_rss(runner.proxy) if runner.proxy else None,
        proxy_core=cpu_s / active if runner.proxy and active else None,
        load_core=(used.upstream_s + used.wrk_s) / active if active else None,
        wrk_cpu_share=used.wrk_s / active if active else 0.0,
        upstream_cpu_share=used.upstream_s / active if active else 0.0,
        other_cpu_share=max(0.0, used.machine_busy_s - ours) / active if active else 0.0,
    )
