"""Hostile-input tests: hypothesis profiles for the fuzz tests, and a raw upstream per module.

The default profile keeps the fuzz short enough for every ``make test``; the long run is
``HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/hostile -k fuzz --timeout=0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from support.raw_upstream import RawUpstream

settings.register_profile("quick", max_examples=150, deadline=None)
settings.register_profile(
    "long",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    """A service that writes exact bytes, for the module."""
    upstream = RawUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream(raw: RawUpstream) -> RawUpstream:
    """The module's raw service, with its scripts and recordings cleared for this test."""
    raw.reset()
    return raw
