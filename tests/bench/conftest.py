"""What the benchmark tests share: the tools the benchmark needs, and its modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

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


@pytest.fixture
def mix() -> Iterator[ModuleType]:
    """``bench/mix.py``."""
    with bench_module("mix") as module:
        yield module


@pytest.fixture
def mix_cases() -> Iterator[ModuleType]:
    """``bench/gwbench/mix_cases.py``."""
    with bench_module("gwbench.mix_cases") as module:
        yield module


@pytest.fixture
def tracing_bench() -> Iterator[ModuleType]:
    """``bench/tracing.py``."""
    with bench_module("tracing") as module:
        yield module


@pytest.fixture
def instructions_bench() -> Iterator[ModuleType]:
    """``bench/instructions.py``."""
    with bench_module("instructions") as module:
        yield module


@pytest.fixture(scope="module")
def bench_tools() -> None:
    """Find nginx and wrk, or install them exactly as the benchmark does (apt-get, no prompts)."""
    with bench_module("gwbench.tools") as tools:
        tools.ensure_tools()
