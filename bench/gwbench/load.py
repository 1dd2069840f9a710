"""One throughput measurement: wrk against a target while the proxy's CPU, RSS and cores are
read.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from gwbench.procs import CoreMeter, RssSampler, pinned, tree_cpu_seconds, tree_cpu_split

REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%.0f,\"duration_us\":%.0f,\"bytes\":%.0f,\"p50_us\":%.0f," ..
    "\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f,\"connect\":%.0f,\"read\":%.0f," ..
    "\"write\":%.0f,\"status\":%.0f,\"timeout\":%.0f}\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9), latency.max, e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class LoadSpec:
    """How hard and how long to push."""

    duration_s: float
    connections: int = 50
    threads: int = 1
    cpus: str | None = "1"
    script_args: tuple[str, ...] = ()  # passed to the Lua script's init(args) after "--"
    timeout_s: float = 5.0  # wrk's --timeout: an answer later than this counts as an error


@dataclass(frozen=True)
class Sample:
    """One wrk run, with what the proxy and the load side spent during it."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    error_kinds: str  # e.g. "status 12, read 3" (wrk's counters; status = non-2xx/3xx answers)
    cpu_us_per_request: float | None
    peak_rss: int | None
    proxy_core: float | None
    load_core: float | None
    wrk_cpu_share: float
    upstream_cpu_share: float
    other_cpu_share: float  # CPU used by anything else on the machine, in cores (noise)
    # The kernel's part of cpu_us_per_request (system time): what the proxy's code does not set.
    kernel_us_per_request: float | None = None


def write_lua(work: Path) -> Path:
    path = work / "report.lua"
    path.write_text(REPORT_LUA)
    return path


def wrk_argv(wrk: str, lua: Path, url: str, headers: Sequence[str], spec: LoadSpec) -> list[str]:
    """The pinned wrk command line for ``spec``."""
    argv = [
        wrk,
        f"-t{spec.threads}",
        f"-c{spec.connections}",
        f"-d{max(spec.duration_s, 1):.0f}s",
        "--timeout",
        f"{spec.timeout_s:.0f}s",
        "-s",
        str(lua),
    ]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    if spec.script_args:
        argv += ["--", *spec.script_args]
    return pinned(argv, spec.cpus)


def run_wrk(
    wrk: str, lua: Path, url: str, headers: Sequence[str], spec: LoadSpec
) -> dict[str, float]:
    done = subprocess.run(
        wrk_argv(wrk, lua, url, headers, spec),
        capture_output=True,
        text=True,
        timeout=spec.duration_s + 30,
        check=False,
    )
    return wrk_summary(done.returncode, done.stdout, done.stderr)


def wrk_summary(returncode: int | None, stdout: str, stderr: str) -> dict[str, float]:
    """The BENCHJSON line the report script prints at wrk's end."""
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result: dict[str, float] = json.loads(line.removeprefix("BENCHJSON "))
            return result
    raise RuntimeError(f"wrk failed (exit {returncode}): {stderr.strip() or stdout}")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    wrk: str,
    lua: Path,
    url: str,
    headers: Sequence[str],
    spec: LoadSpec,
    *,
    proxy: Sequence[psutil.Process],
    upstream: Sequence[psutil.Process],
    proxy_core: int | None,
    load_core: int | None,
) -> Sample:
    """Run wrk once; ``proxy`` is the process tree under test (empty for direct-to-upstream)."""
    (user0, system0), up0 = tree_cpu_split(proxy), tree_cpu_seconds(upstream)
    wrk0 = children_cpu_seconds()
    with CoreMeter() as cores, RssSampler(proxy, 0.1) as rss:
        raw = run_wrk(wrk, lua, url, headers, spec)
    user, system = tree_cpu_split(proxy)
    cpu, kernel = user - user0 + system - system0, system - system0
    up, wrk_cpu = tree_cpu_seconds(upstream) - up0, children_cpu_seconds() - wrk0
    ours = cpu + up + wrk_cpu
    wall = raw["duration_us"] / 1e6
    requests = int(raw["requests"])
    kinds = {key: int(raw[key]) for key in ("connect", "read", "write", "status", "timeout")}
    return Sample(
        rps=requests / wall if wall else 0.0,
        requests=requests,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        errors=sum(kinds.values()),
        error_kinds=", ".join(f"{key} {count}" for key, count in kinds.items() if count),
        cpu_us_per_request=cpu * 1e6 / requests if proxy and requests else None,
        kernel_us_per_request=kernel * 1e6 / requests if proxy and requests else None,
        peak_rss=rss.peak if proxy else None,
        proxy_core=core_busy(cores, proxy_core),
        load_core=core_busy(cores, load_core),
        wrk_cpu_share=wrk_cpu / wall if wall else 0.0,
        upstream_cpu_share=up / wall if wall else 0.0,
        other_cpu_share=max(0.0, cores.busy_seconds - ours) / cores.elapsed_s
        if cores.elapsed_s
        else 0.0,
    )


def core_busy(meter: CoreMeter, core: int | None) -> float | None:
    if core is None or core >= len(meter.busy):
        return None
    return meter.busy[core]
