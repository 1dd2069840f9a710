"""``bench/instructions.py`` leaves out what the event loop's timers run: per-second work whose
count per request depends on how long valgrind takes, not on the request path.

A small uvloop program does the same main work twice, once with timers that each do a lot of
work and once with timers that do none; counted without the timers, the two must agree, and
counted with them, differ by the timers' work."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

MISSING = "not installed: Debian's valgrind package (as root, `make test` installs it)"
PROGRAM = """
import asyncio, sys, uvloop

def tick(loop, left, heavy):
    if heavy:
        sum(range(20_000))
    if left:
        loop.call_later(0.001, tick, loop, left - 1, heavy)

async def main(heavy):
    loop = asyncio.get_running_loop()
    loop.call_later(0.001, tick, loop, 40, heavy)
    for _ in range(60):
        sum(range(5_000))
        await asyncio.sleep(0.002)

uvloop.run(main(sys.argv[1] == "heavy"))
"""


def counted(bench: ModuleType, work: Path, timers: bool, heavy: bool) -> int:
    out = work / f"callgrind.{timers}.{heavy}"
    command = [*bench.callgrind(out, timers), sys.executable, str(work / "program.py")]
    done = subprocess.run(
        [*command, "heavy" if heavy else "light"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = list(work.glob(f"{out.name}.*"))
    found = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


@pytest.mark.timeout(300)
def test_the_loops_timers_are_left_out_of_the_count(
    instructions_bench: ModuleType, tmp_path: Path
) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip(f"valgrind {MISSING}")
    (tmp_path / "program.py").write_text(PROGRAM)

    bench = instructions_bench
    without = {heavy: counted(bench, tmp_path, False, heavy) for heavy in (True, False)}
    with_timers = {heavy: counted(bench, tmp_path, True, heavy) for heavy in (True, False)}

    timer_work = with_timers[True] - with_timers[False]
    assert timer_work > 10_000_000  # 41 ticks of sum(range(20_000)), counted
    assert abs(without[True] - without[False]) < timer_work / 20  # and left out
    # Everything else is counted: collection is on from the start, not only inside timers.
    assert without[False] > 0.9 * with_timers[False]
