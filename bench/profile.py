#!/usr/bin/env python3
"""Profile the gateway under load with py-spy: the hot functions, as text, plus a flame graph.

    .venv/bin/pip install py-spy      # a tool, not a project dependency
    .venv/bin/python bench/profile.py [--seconds 10] [--path /api/v1/tickets/bench] [--redis]

Starts the upstream nginx and one gateway like ``bench/run`` does (gateway on core 0, the rest on
core 1), loads the protected route with wrk, samples the gateway with ``py-spy record``, and prints
the functions with the most samples: self (the leaf frame) and inclusive (anywhere on the stack).
Writes ``bench/.work/profile.svg`` and ``bench/.work/profile.folded``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from gwbench import tools
from gwbench.procs import Processes, free_port, pinned
from gwbench.servers import (
    TICKET_PATH,
    Layout,
    ServerFailed,
    mint_token,
    require_ready,
    start_gateway,
    start_nginx,
    upstream_conf,
)

BENCH = Path(__file__).resolve().parent


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def record(pid: int, seconds: float, out: Path, fmt: str) -> None:
    argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "-d",
        f"{seconds:.0f}",
        "-r",
        "250",
        "--function",
        "--nonblocking",
        "-f",
        fmt,
        "-o",
        str(out),
    ]
    subprocess.run(pinned(argv, "1"), check=True, capture_output=True, timeout=seconds + 60)


def top(folded: Path, limit: int) -> str:
    own: Counter[str] = Counter()
    files: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        files[source_file(frames[-1])] += count
        for frame in set(frames):
            anywhere[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{n * 100 / total:5.1f}  {frame}" for frame, n in own.most_common(limit)]
    lines += ["", "self %  file"]
    lines += [f"{n * 100 / total:5.1f}  {name}" for name, n in files.most_common(limit)]
    lines += [
        "",
        "incl %  function (includes what it awaits; a coroutine resumed by the event loop is",
        "        sampled without the frames above it, so inclusive figures are lower bounds)",
    ]
    lines += [f"{n * 100 / total:5.1f}  {frame}" for frame, n in anywhere.most_common(limit)]
    return "\n".join(lines)


def source_file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rpartition(":")[0] or frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--path", default=TICKET_PATH)
    parser.add_argument("--redis", action="store_true", help="Redis-backed rate limiting")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    found = tools.ensure_tools()
    layout = Layout(BENCH / ".work", BENCH.parent)
    layout.prepare()
    procs = Processes()
    try:
        port = free_port()
        upstream = start_nginx(
            procs, layout, found.nginx, "upstream", upstream_conf(layout, port), port, "1"
        )
        gateway = start_gateway(
            procs,
            layout,
            "gateway-profile",
            workers=1,
            upstream_port=port,
            files_port=port,
            cpus="0",
            redis_url="redis://127.0.0.1:6379/0" if args.redis else None,
        )
        require_ready(gateway, "/live", 30)
        url = f"http://127.0.0.1:{gateway.port}{args.path}"
        load = subprocess.Popen(
            pinned(
                [
                    found.wrk,
                    "-t1",
                    "-c50",
                    f"-d{args.seconds + 8:.0f}s",
                    "-H",
                    f"Authorization: Bearer {mint_token()}",
                    url,
                ],
                "1",
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            folded, svg = layout.work / "profile.folded", layout.work / "profile.svg"
            record(gateway.pid, args.seconds / 2, svg, "flamegraph")
            record(gateway.pid, args.seconds / 2, folded, "raw")
        finally:
            out, _ = load.communicate(timeout=args.seconds + 60)
        print(out)
        print(top(folded, args.top))
        print(f"\nflame graph: {svg}\nfolded stacks: {folded}")
        del upstream
    except ServerFailed as exc:
        print(f"profile: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
