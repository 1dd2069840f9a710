"""The minimum body rate, judged per window on an injected clock."""

from __future__ import annotations

from api_gateway.http.body import BodyPace

RATE = 100
WINDOW_S = 10.0


def pace(now: float = 0.0, received: int = 0) -> BodyPace:
    return BodyPace(RATE, WINDOW_S, now, received)


def test_nothing_is_judged_before_the_first_window_ends() -> None:
    body = pace()
    assert body.deadline == WINDOW_S
    assert not body.too_slow(9.9, 0)


def test_a_window_with_too_few_bytes_is_too_slow() -> None:
    assert pace().too_slow(WINDOW_S, RATE * 10 - 1)


def test_a_window_with_enough_bytes_opens_the_next_one() -> None:
    body = pace()
    assert not body.too_slow(WINDOW_S, RATE * 10)
    assert body.deadline == 2 * WINDOW_S
    # Each window stands on its own: the first one's bytes do not pay for the second.
    assert body.too_slow(2 * WINDOW_S, RATE * 10 + 5)


def test_a_burst_does_not_buy_a_long_drip() -> None:
    body = pace()
    assert not body.too_slow(WINDOW_S, 1_000_000)
    assert body.too_slow(2 * WINDOW_S, 1_000_001)


def test_time_held_by_the_gateway_is_not_judged() -> None:
    body = pace()
    body.hold()
    assert body.deadline == float("inf")
    assert not body.too_slow(100.0, 0)
    body.release(100.0, 0)
    assert body.deadline == 100.0 + WINDOW_S
    assert not body.too_slow(105.0, 0)
    assert body.too_slow(110.0, 10)


def test_bytes_received_while_held_count_towards_no_window() -> None:
    body = pace(received=50)
    body.hold()
    body.release(30.0, 5000)
    assert body.too_slow(40.0, 5000 + RATE * 10 - 1)
