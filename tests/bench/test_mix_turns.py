"""``bench/mix.py --turns``: every case's load generator started at once, run one at a time in
short turns, so that every case is measured in the same seconds of a host whose speed changes.

Real processes stand in for wrk here: each writes the time at every step of a loop, so the test
sees when it ran. What is asserted is the turn-taking itself (one at a time, each its share,
each told to finish), never a speed."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

# A load stand-in: marks the time every millisecond; on SIGINT (what ends a turn-taking run, as
# for wrk) it prints how many marks it made and exits.
STAND_IN = textwrap.dedent(
    """
    import sys, time
    marks = open(sys.argv[1], "w")
    count = 0
    try:
        while True:
            marks.write(f"{time.monotonic()}\\n")
            marks.flush()
            count += 1
            time.sleep(0.001)
    except KeyboardInterrupt:
        print(f"made {count} marks")
    """
)
TURN_S = 0.03
ACTIVE_S = 0.45


def marks(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().split()]


@pytest.mark.timeout(60)
def test_the_loads_take_turns_one_at_a_time(turns: ModuleType, tmp_path: Path) -> None:
    files = [tmp_path / f"marks-{n}.txt" for n in range(3)]
    runners = [
        turns.Runner(f"case-{n}", [sys.executable, "-c", STAND_IN, str(path)], [], [])
        for n, path in enumerate(files)
    ]

    turns.run_block(runners, ACTIVE_S, TURN_S, first=1)

    for runner in runners:  # each one had its share, in many turns, and finished when told
        assert runner.active_s >= ACTIVE_S, runner.key
        assert runner.turns >= ACTIVE_S / TURN_S, runner.key
        assert runner.returncode == 0 and runner.output.startswith("made "), runner.stderr
    windows = sorted((start, end, n) for n, r in enumerate(runners) for start, end in r.windows)
    for (_, end, _), (start, _, _) in itertools.pairwise(windows):
        assert start >= end  # one turn at a time
    assert [n for _, _, n in windows[:3]] == [1, 2, 0]  # in rotation, from where it was told
    for n, path in enumerate(files):  # and a load ran only within its own turns
        own = runners[n].windows
        strays = [mark for mark in marks(path) if not any(a <= mark <= b for a, b in own)]
        assert strays == [], n
