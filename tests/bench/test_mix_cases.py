"""``bench/mix.py --cases``: a subset of the production mix keeps what each chosen case is
compared with (its baseline, that one's baseline, the nginx row of its traffic), so every ratio
its report shows is measured in the same run. Pure: the case list only."""

from __future__ import annotations

from types import ModuleType

import pytest


def keys(mix_cases: ModuleType, chosen: list[str]) -> list[str]:
    every = mix_cases.cases(100_000)
    return [case.key for case in mix_cases.chosen(every, chosen)]


def test_a_tracing_case_brings_its_baseline_chain_and_their_nginx_rows(
    mix_cases: ModuleType,
) -> None:
    # 1 % tracing is compared with the Zipf row, which is compared with the single user.
    assert keys(mix_cases, ["gw-trace-0.01"]) == [
        "nginx-single",
        "nginx-zipf",
        "gw-single",
        "gw-zipf",
        "gw-trace-0.01",
    ]


def test_cases_keep_the_usual_order_and_appear_once(mix_cases: ModuleType) -> None:
    assert keys(mix_cases, ["gw-redis-uniform", "gw-single", "gw-single"]) == [
        "nginx-single",
        "nginx-uniform",
        "gw-single",
        "gw-redis-single",
        "gw-redis-uniform",
    ]
    assert keys(mix_cases, ["nginx-zipf"]) == ["nginx-zipf"]


def test_an_unknown_case_is_refused_by_name(mix_cases: ModuleType) -> None:
    with pytest.raises(ValueError, match="no such case: gw-zipff"):
        keys(mix_cases, ["gw-zipf", "gw-zipff"])
