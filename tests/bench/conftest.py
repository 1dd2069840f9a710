"""What the benchmark smoke tests share: the tools the benchmark needs."""

from __future__ import annotations

import sys
from pathlib import Path

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
