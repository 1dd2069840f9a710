"""What the benchmark tests share: the tools the benchmark needs, and its modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench_tools() -> None:
    """Find nginx and wrk, or install them exactly as the benchmark does (apt-get, no prompts)."""
    sys.path.insert(0, str(BENCH))
    try:
        from gwbench.tools import ensure_tools

        ensure_tools()
    finally:
        sys.path.remove(str(BENCH))


def bench_module(name: str) -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        # Imported by name: the bench's own modules are not type-checked with the tests.
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def mix() -> Iterator[ModuleType]:
    """``bench/mix.py``."""
    yield from bench_module("mix")


@pytest.fixture
def mix_cases() -> Iterator[ModuleType]:
    """``bench/gwbench/mix_cases.py``."""
    yield from bench_module("gwbench.mix_cases")
