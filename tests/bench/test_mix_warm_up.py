"""The production mix's warm-up: each case sends its whole request sequence once, so every case
is measured over the same part of its traffic, whatever its speed (bench/README.md, "Warm-up:
one pass"). Pure: the runs are stand-ins that advance the case's place in its sequence."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


class Case:
    key = "gw-uniform"


class Result:
    def __init__(self) -> None:
        self.case = Case()
        self.error: str | None = None


def stand_in(module: ModuleType, per_run: list[int], fail_at: int = -1) -> tuple[Any, list[float]]:
    """A ``Mix`` whose runs send ``per_run[n]`` requests each; returns it and the durations
    each run was asked for."""
    runner = module.Mix.__new__(module.Mix)
    runner.settings = module.Settings(
        users=100_000, reps=1, duration_s=5.0, warmup_s=5.0, warmup_fixed_s=None,
        connections=50, pin=False, redis_url=None, results_dir=Path("."), work_dir=Path("."),
        quick=False, command="",
    )  # fmt: skip
    runner.offsets = {}
    asked: list[float] = []

    def sample(result: Result, duration_s: float, keep: bool) -> None:
        assert not keep  # a warm-up run is never recorded
        if len(asked) == fail_at:
            result.error = "the gateway died"
            return
        key = result.case.key
        runner.offsets[key] = runner.offsets.get(key, 0) + per_run[len(asked)]
        asked.append(duration_s)

    runner.sample = sample
    return runner, asked


def test_a_slow_case_warms_up_until_its_whole_sequence_was_sent(mix: ModuleType) -> None:
    length = mix.traffic.SEQUENCE_LENGTH
    runner, asked = stand_in(mix, [length // 3] * 10)
    result = Result()
    runner.warm_up(result)
    assert asked == [5.0] * 4  # three thirds fall short by the rounding; the fourth run passes
    assert runner.offsets["gw-uniform"] >= length


def test_a_fast_case_needs_one_run(mix: ModuleType) -> None:
    runner, asked = stand_in(mix, [2 * mix.traffic.SEQUENCE_LENGTH])
    runner.warm_up(Result())
    assert asked == [5.0]


def test_a_failed_case_stops_warming_up(mix: ModuleType) -> None:
    runner, asked = stand_in(mix, [1000] * 10, fail_at=2)
    result = Result()
    runner.warm_up(result)
    assert len(asked) == 2 and result.error == "the gateway died"


def test_the_warm_up_is_bounded_in_time(mix: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mix, "WARM_UP_MAX_S", 0.0)
    runner, asked = stand_in(mix, [1000] * 10)
    runner.warm_up(Result())
    assert asked == []  # no time left: measured as it is
