"""``bench/mix.py --cases``: a subset of the production mix keeps what each chosen case is
compared with (its baseline, that one's baseline, the nginx row of its traffic), so every ratio
its report shows is measured in the same run. Pure: the case list only."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_the_cases_that_take_tracing_apart_run_only_when_named(mix_cases: ModuleType) -> None:
    every = [case.key for case in mix_cases.cases(100_000)]
    usual = [key for key in every if key not in mix_cases.ON_REQUEST]
    assert mix_cases.ON_REQUEST == {"gw-trace-0", "gw-idle-thread"} <= set(every)
    assert "gw-trace-0.01" in usual and len(usual) == len(every) - 2
    assert keys(mix_cases, ["gw-trace-0", "gw-idle-thread"]) == [
        "nginx-single",
        "nginx-zipf",
        "gw-single",
        "gw-zipf",
        "gw-trace-0",
        "gw-idle-thread",
    ]
    assert mix_cases.GATEWAYS["gw-trace-0"] == {"OTEL_TRACES_SAMPLER_ARG": "0"}


def test_the_idle_thread_case_gives_each_forked_process_one_more_thread(
    mix_cases: ModuleType,
) -> None:
    """As the gateway's workers are forked: the parent keeps one thread, the child has two."""
    script = (
        "import os, threading, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(0.2)\n"  # bounded: the thread is started by the fork hook, at once
        "    os._exit(threading.active_count())\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(threading.active_count(), os.waitstatus_to_exitcode(status))\n"
    )
    env = {**os.environ, **mix_cases.GATEWAYS["gw-idle-thread"]}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.split() == ["1", "2"], done.stderr
