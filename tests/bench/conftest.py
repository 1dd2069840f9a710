"""What the benchmark tests share: the tools the benchmark needs, and its modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@contextmanager
def bench_module(name: str) -> Iterator[ModuleType]:
    """A module of ``bench/``, imported with ``bench/`` on the path while it is used."""
    sys.path.insert(0, str(BENCH))
    try:
        # Imported by name: the bench's own modules are not type-checked with the tests.
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def module_fixture(name: str, module_name: str) -> Any:
    """A fixture ``name`` that yields the bench module ``module_name``."""

    def load() -> Iterator[ModuleType]:
        with bench_module(module_name) as module:
            yield module

    load.__doc__ = f"``bench/{module_name.replace('.', '/')}.py``."
    return pytest.fixture(name=name)(load)


mix = module_fixture("mix", "mix")
mix_cases = module_fixture("mix_cases", "gwbench.mix_cases")
tracing_bench = module_fixture("tracing_bench", "tracing")
instructions_bench = module_fixture("instructions_bench", "instructions")
turns = module_fixture("turns", "gwbench.turns")
mix_report = module_fixture("mix_report", "gwbench.mix_report")


@pytest.fixture(scope="module")
def bench_tools() -> None:
    """Find nginx and wrk, or install them exactly as the benchmark does (apt-get, no prompts)."""
    with bench_module("gwbench.tools") as tools:
        tools.ensure_tools()
