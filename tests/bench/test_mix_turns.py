"""``bench/mix.py --turns``: every case's load generator started at once, run one at a time in
short turns, so that every case is measured in the same seconds of a host whose speed changes.

Real processes stand in for wrk here: each writes the time at every step of a loop, so the test
sees when it ran. What is asserted is the turn-taking itself (one at a time, each its share,
each told to finish), never a speed."""

from __future__ import annotations

import itertools
import statistics
import sys
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

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

    turns.run_block(runners, ACTIVE_S, TURN_S, seed=1)

    for runner in runners:  # each one had its share, in many turns, and finished when told
        assert runner.spent.wall_s >= ACTIVE_S, runner.key
        assert runner.turns >= ACTIVE_S / TURN_S, runner.key
        assert runner.returncode == 0 and runner.output.startswith("made "), runner.stderr
    windows = sorted((start, end, n) for n, r in enumerate(runners) for start, end in r.windows)
    for (_, end, _), (start, _, _) in itertools.pairwise(windows):
        assert start >= end  # one turn at a time
    for start in range(0, len(windows) - 3, 3):  # every one once a round, in varying orders
        assert sorted(n for _, _, n in windows[start : start + 3]) == [0, 1, 2]
    assert len({tuple(n for _, _, n in windows[i : i + 3]) for i in range(0, 30, 3)}) > 1
    for n, path in enumerate(files):  # and a load ran only within its own turns
        # (a first turn counts from the load's first write; the stand-in's start comes before)
        (first_start, first_end), *rest = runners[n].windows
        own = [(first_start - 0.010, first_end), *rest]
        strays = [mark for mark in marks(path) if not any(a <= mark <= b for a, b in own)]
        assert strays == [], n


def results(mix_report: ModuleType, cpus: dict[str, list[float]]) -> list[Any]:
    """Case results with the given CPU µs per request in each repetition."""
    found = []
    for key, values in cpus.items():
        case = sys.modules["gwbench.report"].Case(key, key, "100k Zipf", key, "zipf")
        samples = [
            SimpleNamespace(cpu_us_per_request=value, kernel_us_per_request=value / 3)
            for value in values
        ]
        found.append(mix_report.CaseResult(case, samples))
    return found


def test_a_ratio_pairs_each_repetition_with_its_own_baseline(mix_report: ModuleType) -> None:
    # The host was slow in the repetitions 2 and 3 for both cases alike. Three repetitions of
    # five read 1.04; the ratio of the two medians (62.0 and 67.1, from different repetitions)
    # reads 1.08.
    base, traced = [60.0, 70.0, 72.0, 61.0, 62.0], [62.4, 72.8, 74.88, 67.1, 62.0]
    off, on = results(mix_report, {"gw-zipf": base, "gw-trace-0.01": traced})

    assert mix_report.cpu_ratio(on, off) == pytest.approx(1.04)
    assert mix_report.ratio(mix_report.cpu(on), mix_report.cpu(off)) != pytest.approx(1.04)
    # with fewer than three repetitions, or unequal ones, it falls back to the medians' ratio
    few_off, few_on = results(mix_report, {"a": base[:2], "b": traced[:2]})
    assert mix_report.cpu_ratio(few_on, few_off) == pytest.approx(
        statistics.median(traced[:2]) / statistics.median(base[:2])
    )
    _, short = results(mix_report, {"a": base, "b": traced[:4]})
    assert mix_report.cpu_ratio(short, off) == pytest.approx(
        statistics.median(traced[:4]) / statistics.median(base)
    )


def sample(cpu_us: float) -> Any:
    """One run's whole sample with ``cpu_us`` CPU µs per request (the rest plausible)."""
    return sys.modules["gwbench.load"].Sample(
        20_000.0,
        80_000,
        1.0,
        4.0,
        6.0,
        0,
        "",
        cpu_us,
        100 << 20,
        0.9,
        0.5,
        0.3,
        0.1,
        0.0,
        cpu_us / 4,
    )


def test_tracing_is_also_read_over_both_gateways_of_its_baselines_settings(
    mix_report: ModuleType,
) -> None:
    # The Zipf row and its control differ by 2 % in every repetition; tracing is 3 % over their
    # mean: the table reads 1.03 for it and 1.01 for the control (rows compared with the Zipf
    # row), and has no row for one with another baseline.
    zipf, control = [50.0, 60.0, 55.0, 70.0], [51.0, 61.2, 56.1, 71.4]
    mean = [(a + b) / 2 for a, b in zip(zipf, control, strict=True)]
    rows = results(
        mix_report,
        {
            "gw-single": [40.0, 48.0, 44.0, 56.0],
            "gw-zipf": zipf,
            "gw-zipf-control": control,
            "gw-trace-0.01": [1.03 * m for m in mean],
        },
    )
    for row in rows:  # whole samples, as a run makes them, so that the report can be written
        row.samples = [sample(cpu.cpu_us_per_request) for cpu in row.samples]
    report = mix_report.MixReport("mix", {}, {}, rows)
    lines = mix_report.over_both_off(report)
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    cells = {row[0]: row[2] for row in split}
    assert set(cells) == {"gw-zipf-control", "gw-trace-0.01"}
    assert cells["gw-trace-0.01"] == "1.030 [1.030 to 1.030]"
    assert cells["gw-zipf-control"].startswith("1.010")
    assert "Over both gateways" in mix_report.mix_markdown(report)
    # without every repetition of the control, there is no such table
    [few] = results(mix_report, {"gw-zipf-control": control[:2]})
    few.samples = [sample(cpu) for cpu in control[:2]]
    short = mix_report.MixReport("mix", {}, {}, [rows[0], rows[1], few, rows[3]])
    assert mix_report.over_both_off(short) == []
    assert "Over both gateways" not in mix_report.mix_markdown(short)
