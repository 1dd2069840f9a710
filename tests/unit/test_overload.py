"""Overload detection from sampled event-loop lag and requests in flight, with hysteresis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.settings import OverloadConfig
from api_gateway.overload import OverloadState

CONFIG = OverloadConfig(True, 200, 1000, 0.5, 10_000, 100)


def test_lag_or_in_flight_over_the_threshold_means_overloaded() -> None:
    state = OverloadState(CONFIG)
    assert not state.observe(150, 900, 0)
    assert state.observe(250, 10, 100) and state.overloaded
    other = OverloadState(CONFIG)
    assert other.observe(0, 1001, 0) and other.overloaded


def test_recovery_needs_a_calm_period() -> None:
    state = OverloadState(CONFIG)
    state.observe(500, 0, 0)
    assert not state.observe(0, 0, 1_000)
    assert not state.observe(0, 0, 10_999)
    assert state.observe(0, 0, 11_000)
    assert not state.overloaded


def test_a_spike_during_recovery_restarts_the_calm_period() -> None:
    state = OverloadState(CONFIG)
    state.observe(500, 0, 0)
    state.observe(0, 0, 1_000)
    state.observe(300, 0, 9_000)
    assert not state.observe(0, 0, 15_000)
    assert state.overloaded
    assert state.observe(0, 0, 25_000)


@given(st.lists(st.tuples(st.floats(0, 1000), st.integers(0, 3000)), max_size=50))
def test_never_overloaded_without_a_hot_sample(samples: list[tuple[float, int]]) -> None:
    state = OverloadState(CONFIG)
    for n, (lag, in_flight) in enumerate(samples):
        state.observe(lag, in_flight, n * 100.0)
        if state.overloaded:
            assert any(lag > 200 or load > 1000 for lag, load in samples[: n + 1])
