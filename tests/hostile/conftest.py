"""Hostile-input tests: hypothesis profiles for the fuzz tests.

The default profile keeps the fuzz short enough for every ``make test``; the long run is
``HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/hostile -k fuzz --timeout=0``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("quick", max_examples=150, deadline=None)
settings.register_profile(
    "long",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
