"""Unit tests for the circuit breaker state machine (explicit clock)."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.settings import BreakerConfig
from api_gateway.upstream.breaker import Breaker, Event, Outcome, State

T = TypeVar("T")
SEED = BreakerConfig(error_threshold_pct=50, reset_timeout_ms=30_000, volume_threshold=10)
START = 5_000_000.0


def breaker(pct: int = 50, volume: int = 10, reset_ms: int = 30_000) -> Breaker:
    return Breaker(BreakerConfig(pct, reset_ms, volume))


def allowed(b: Breaker, now: float) -> bool:
    return b.allow(now)[0]


def outcome(success: bool) -> Outcome:
    return Outcome.SUCCESS if success else Outcome.FAILURE


def feed(b: Breaker, outcomes: str, now: float = START) -> None:
    """Record outcomes written as a string: '.' success, 'x' failure."""
    for outcome in outcomes:
        b.record(Outcome.SUCCESS if outcome == "." else Outcome.FAILURE, now)


def tripped(now: float = START) -> Breaker:
    b = breaker()
    feed(b, "x" * 10, now)
    assert b.state is State.OPEN
    return b


# --- opening ------------------------------------------------------------------------------------


def test_new_breaker_is_closed_and_allows() -> None:
    b = Breaker(SEED)
    assert b.state is State.CLOSED
    assert allowed(b, START)


def test_opens_at_error_threshold_with_enough_volume() -> None:
    b = breaker()
    feed(b, "." * 5 + "x" * 4)
    assert b.state is State.CLOSED
    feed(b, "x")  # 10 calls, 5 failures: 50 %
    assert b.state is State.OPEN  # type: ignore[comparison-overlap]  # feed() moved it
    assert not allowed(b, START)


def test_stays_closed_below_volume_threshold() -> None:
    b = breaker()
    feed(b, "x" * 9)
    assert b.state is State.CLOSED
    assert allowed(b, START)


def test_stays_closed_below_error_threshold() -> None:
    b = breaker()
    feed(b, "." * 11 + "x" * 10)  # 10 of 21 is under 50 %
    assert b.state is State.CLOSED


def test_successes_alone_never_open() -> None:
    b = breaker(pct=1, volume=1)
    feed(b, "." * 1000)
    assert b.state is State.CLOSED


def test_failures_older_than_window_are_forgotten() -> None:
    b = breaker()
    feed(b, "x" * 9, START)
    feed(b, "x", START + 10_000)
    assert b.state is State.CLOSED
    assert b.stats()["calls"] == 1


def test_failures_within_window_are_counted() -> None:
    b = breaker()
    feed(b, "x" * 9, START)
    feed(b, "x", START + 9_000)
    assert b.state is State.OPEN


def test_window_rolls_bucket_by_bucket() -> None:
    b = breaker(volume=100)
    for second in range(10):
        feed(b, "x", START + second * 1000)
    assert b.stats()["failures"] == 10
    feed(b, ".", START + 10_000)  # the bucket of START falls out
    assert b.stats() == {"state": "CLOSED", "calls": 10, "failures": 9, "opens": 0}


def test_clock_going_backwards_does_not_break_counts() -> None:
    b = breaker(volume=100)
    feed(b, "x", START)
    feed(b, "x", START - 5_000)
    assert b.stats()["failures"] == 2


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3_000)), max_size=80))
def test_opens_exactly_when_window_counts_cross_threshold(
    outcomes: list[tuple[bool, int]],
) -> None:
    # Reference: the counts within the 10 one-second buckets ending at the current record.
    b = breaker(pct=50, volume=5)
    now = START
    history: list[tuple[float, bool]] = []
    for success, gap in outcomes:
        now += gap
        history.append((now, success))
        b.record(outcome(success), now)
        current = (now - START) // 1000
        window = [s for t, s in history if (t - START) // 1000 > current - 10]
        calls, failures = len(window), window.count(False)
        should_open = not success and calls >= 5 and failures * 2 >= calls
        if should_open:
            assert b.state is State.OPEN
            return
        assert b.state is State.CLOSED
        assert b.stats()["calls"] == calls


# --- open, half-open, closed --------------------------------------------------------------------


def test_open_refuses_until_reset_timeout() -> None:
    b = tripped()
    assert not allowed(b, START + 29_999)
    assert b.state is State.OPEN


def test_half_open_allows_one_trial_at_a_time() -> None:
    b = tripped()
    assert allowed(b, START + 30_000)
    assert b.state is State.HALF_OPEN
    assert not allowed(b, START + 30_001)
    assert not allowed(b, START + 90_000)


def test_successful_trial_closes_and_clears_window() -> None:
    b = tripped()
    allowed(b, START + 30_000)
    b.record(Outcome.SUCCESS, START + 30_100)
    assert b.state is State.CLOSED
    assert b.stats() == {"state": "CLOSED", "calls": 0, "failures": 0, "opens": 1}
    assert allowed(b, START + 30_200)
    feed(b, "x" * 9, START + 30_300)
    assert b.state is State.CLOSED


def test_failed_trial_reopens_for_a_new_reset_timeout() -> None:
    b = tripped()
    allowed(b, START + 30_000)
    b.record(Outcome.FAILURE, START + 31_000)
    assert b.state is State.OPEN
    assert b.stats()["opens"] == 2
    assert not allowed(b, START + 60_999)
    assert allowed(b, START + 61_000)


def test_results_recorded_while_open_are_ignored() -> None:
    b = tripped()
    feed(b, "." * 50, START + 1_000)
    assert b.state is State.OPEN
    assert not allowed(b, START + 1_000)


def test_stats_count_opens() -> None:
    b = tripped()
    assert b.stats() == {"state": "OPEN", "calls": 10, "failures": 10, "opens": 1}


def test_events_name_every_transition() -> None:
    b = breaker(volume=2)
    assert b.allow(START) == (True, ())
    assert b.record(Outcome.SUCCESS, START) == (Event.SUCCESS,)
    assert b.record(Outcome.TIMEOUT, START) == (Event.TIMEOUT, Event.OPEN)
    assert b.allow(START + 1) == (False, (Event.REJECT,))
    assert b.allow(START + 30_000) == (True, (Event.HALF_OPEN,))
    assert b.allow(START + 30_001) == (False, (Event.REJECT,))
    assert b.record(Outcome.SUCCESS, START + 30_002) == (Event.SUCCESS, Event.CLOSE)
    assert b.state is State.CLOSED


def test_half_open_lets_the_configured_number_of_probes_through() -> None:
    b = Breaker(BreakerConfig(50, 30_000, 2, half_open_probes=3))
    feed(b, "xx")
    verdicts = [allowed(b, START + 30_000 + i) for i in range(5)]
    assert verdicts == [True, True, True, False, False]
    b.record(Outcome.SUCCESS, START + 30_010)
    assert b.state is State.CLOSED


def test_an_ignored_probe_is_given_back() -> None:
    b = tripped()
    assert allowed(b, START + 30_000)
    assert b.record(Outcome.IGNORED, START + 30_001) == ()
    assert b.state is State.HALF_OPEN
    assert allowed(b, START + 30_002)


def test_retry_after_counts_down_while_open() -> None:
    b = tripped()
    assert b.retry_after_ms(START + 10_000) == 20_000
    assert b.retry_after_ms(START + 40_000) == 0
    assert breaker().retry_after_ms(START) == 0


def test_window_length_is_configurable() -> None:
    b = Breaker(BreakerConfig(50, 30_000, 3, window_ms=1_000))
    feed(b, "xx", START)
    feed(b, "x", START + 1_000)  # the first two fell out of a 1 s window
    assert b.state is State.CLOSED
    assert b.stats()["calls"] == 1


@given(st.lists(st.sampled_from(list(Outcome)), max_size=60), st.integers(1, 4))
def test_probes_in_flight_never_exceed_the_bound(outcomes: list[Outcome], probes: int) -> None:
    b = Breaker(BreakerConfig(50, 1_000, 2, half_open_probes=probes))
    now, in_flight = START, 0
    for result in outcomes:
        now += 400
        if allowed(b, now):
            in_flight += 1
        if b.state is State.HALF_OPEN:
            assert b.probes_in_flight <= probes
        if in_flight:
            b.record(result, now)
            in_flight -= 1


# --- shared by the workers of one gateway (upstream.breaker_sync) ---------------------------------


def test_other_workers_failures_count_with_this_one_s() -> None:
    b = breaker()
    feed(b, "xxxx")
    assert b.share(calls=5, failures=5, opened_at=0.0, now_ms=START + 1) == ()
    assert b.state is State.CLOSED  # 9 calls in the gateway's window: under the volume
    assert b.record(Outcome.FAILURE, START + 2) == (Event.FAILURE, Event.OPEN)


def test_the_gateway_s_window_over_the_line_opens_at_the_sync() -> None:
    b = breaker()
    feed(b, "xxx.")
    assert b.share(calls=6, failures=4, opened_at=0.0, now_ms=START + 1) == (Event.OPEN,)
    assert not allowed(b, START + 2)


def test_another_worker_s_open_circuit_opens_this_one_until_its_reset() -> None:
    b = breaker()
    assert b.share(0, 0, opened_at=START - 1_000, now_ms=START) == (Event.OPEN,)
    assert not allowed(b, START + 28_000)
    assert allowed(b, START + 29_001)  # its reset counts from the other worker's opening


def test_an_open_older_than_this_breaker_s_last_close_is_not_adopted_again() -> None:
    b = tripped()
    assert allowed(b, START + 30_000)  # half-open: the probe
    b.record(Outcome.SUCCESS, START + 30_001)
    assert b.state is State.CLOSED
    # Another worker still reports the opening this one just recovered from (or a later one
    # that is already over): neither closes the circuit again.
    assert b.share(0, 0, opened_at=START + 5, now_ms=START + 30_002) == ()
    assert b.state is State.CLOSED


def test_an_open_circuit_shares_no_counts_but_when_it_opened() -> None:
    b = tripped()
    assert b.window(START + 1) == (0, 0, START)
    c = breaker()
    feed(c, "x.")
    assert c.window(START) == (2, 1, 0.0)
