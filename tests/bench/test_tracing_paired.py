"""``bench/tracing.py --paired``: modes measured in turns, each round over the "off" round of
its turn. The summary is checked on made-up figures; the run itself on a tiny setting (it checks
that the modes and the control are reported, never that anything is fast)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_each_round_is_divided_by_the_off_round_of_its_own_turn(tracing_bench: ModuleType) -> None:
    # The machine slows down twice as much in turn 2: a mode 10 % dearer stays at 1.10 however
    # slow the turn, where the ratio of the medians would not see the turns at all.
    rounds = {
        "off": [10.0, 20.0, 10.0, 10.0, 10.0],
        "ratio 0.01": [11.0, 22.0, 11.0, 11.0, 11.0],
        "control": [10.0, 20.0, 9.0, 11.0, 10.0],
    }

    summary = tracing_bench.paired_summary(rounds, "off")

    assert set(summary) == {"ratio 0.01", "control"}
    assert summary["ratio 0.01"] == pytest.approx((1.10, 1.10, 1.10))
    median, q1, q3 = summary["control"]
    assert (median, q1, q3) == pytest.approx((1.0, 1.0, 1.0))
    assert tracing_bench.paired_summary({"off": [5.0, 5.0], "x": [4.0, 6.0]}, "off")[
        "x"
    ] == pytest.approx((1.0, 0.9, 1.1))


def test_rounds_of_unequal_turns_are_refused(tracing_bench: ModuleType) -> None:
    with pytest.raises(ValueError):
        tracing_bench.paired_summary({"off": [1.0, 1.0], "x": [1.0]}, "off")


@pytest.mark.timeout(120)
def test_paired_run_reports_every_mode_and_the_control() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "tracing.py"), "--paired", "--pairs", "4", "--round", "50"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines[0].startswith("4 turns of 50 requests per mode"), lines
    figures = {
        match["name"]: match
        for line in lines[1:]
        if (match := re.fullmatch(r"\s*(?P<name>.+?): +(?P<us>[\d.]+) µs(?P<rest>.*)", line))
    }
    assert list(figures) == ["off", "off (control)", "ratio 0", "ratio 0.01"], lines
    assert figures["off"]["rest"] == ""  # the base has no ratio of its own
    for name in ("off (control)", "ratio 0", "ratio 0.01"):
        assert float(figures[name]["us"]) > 0
        assert re.fullmatch(r"  x off [\d.]+ \(quartiles [\d.]+ to [\d.]+\)", figures[name]["rest"])
