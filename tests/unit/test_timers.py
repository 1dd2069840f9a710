"""Deadlines that forgive the loop's own pauses: the pure rule on an injected clock, and the
``async with`` shell on a real loop blocked by ``time.sleep`` the way a heavy request blocks it."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import uvloop

from api_gateway.timers import (
    LOOP_LATE_S,
    MAX_EXTENSIONS,
    PatientDeadline,
    PatientTimeout,
    forgives,
    patiently,
)

BOUND_S = 0.02
STALL_S = 0.1  # five bounds


def test_a_timer_on_time_over_nothing_ready_is_a_timeout() -> None:
    deadline = PatientDeadline(100.0, 0.05)
    assert deadline.over(100.05)
    assert deadline.over(100.05 + LOOP_LATE_S / 2)


def test_an_early_wake_waits_on() -> None:
    deadline = PatientDeadline(100.0, 0.05)
    assert not deadline.over(100.01)
    assert deadline.due == 100.05 and deadline.extensions == 0


def test_a_late_timer_gives_one_more_bound_from_now() -> None:
    deadline = PatientDeadline(100.0, 0.05)
    assert not deadline.over(100.2)  # the loop was held 150 ms past the due time
    assert deadline.due == pytest.approx(100.25)
    assert deadline.over(100.25)  # and then on time: the peer really did not answer


def test_an_answer_waiting_unread_gives_one_more_bound() -> None:
    deadline = PatientDeadline(100.0, 0.05)
    assert not deadline.over(100.05, lambda: True)
    assert deadline.due == pytest.approx(100.1)
    assert deadline.over(100.1, lambda: False)


def test_readiness_is_asked_only_for_a_timer_on_time() -> None:
    asked: list[bool] = []

    def ready() -> bool:
        asked.append(True)
        return False

    assert forgives(0, 0.2, ready)
    assert not asked
    assert not forgives(0, 0.0, ready)
    assert asked == [True]


def test_a_loop_busy_all_the_time_still_ends_the_wait() -> None:
    now, deadline = 0.0, PatientDeadline(0.0, 0.05)
    for _ in range(MAX_EXTENSIONS):
        now = deadline.due + 1.0  # every timer a second late
        assert not deadline.over(now, lambda: True)
    assert deadline.over(deadline.due + 1.0, lambda: True)
    assert deadline.extensions == MAX_EXTENSIONS


def test_the_cap_is_per_wait() -> None:
    deadline = PatientDeadline(0.0, 0.05, max_extensions=1)
    assert not deadline.over(1.0)
    assert deadline.over(2.0)


def stall() -> None:
    """Block the loop, as a heavy request would."""
    time.sleep(STALL_S)


async def _stall_then(step: asyncio.Future[str], result: str) -> None:
    """The answer comes while the loop is blocked: it is there, but not yet read."""
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(step.set_result, result)
    stall()


def test_a_stall_longer_than_the_bound_is_not_a_timeout() -> None:
    async def story() -> None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stall = asyncio.ensure_future(_stall_then(future, "answer"))
        async with PatientTimeout(BOUND_S) as timeout:
            assert await future == "answer"
        await stall
        assert timeout.extensions == 1

    uvloop.run(story())


def test_asyncio_timeout_takes_the_same_stall_for_a_timeout() -> None:
    """Why the primitive exists: the plain timer cancels the answer that is already there."""

    async def story() -> None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader, writer = socket.socketpair()
        loop = asyncio.get_running_loop()
        loop.add_reader(reader.fileno(), lambda: future.done() or future.set_result("answer"))  # type: ignore[func-returns-value]
        loop.call_soon(writer.send, b"x")
        loop.call_soon(time.sleep, STALL_S)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(BOUND_S):
                await future
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()

    uvloop.run(story())


def test_an_answer_in_a_socket_during_a_stall_is_read() -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        reader, writer = socket.socketpair()
        loop.add_reader(reader.fileno(), lambda: future.done() or future.set_result("answer"))  # type: ignore[func-returns-value]
        loop.call_soon(writer.send, b"x")
        loop.call_soon(time.sleep, STALL_S)
        assert await patiently(future, BOUND_S) == "answer"
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()

    uvloop.run(story())


def test_no_answer_is_a_timeout_within_the_bound() -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await patiently(loop.create_future(), BOUND_S)
        assert loop.time() - started < BOUND_S + 0.5  # slack for a loaded machine

    uvloop.run(story())


def test_a_loop_stalled_at_every_bound_still_times_out() -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()

        def stall_again() -> None:
            time.sleep(BOUND_S * 2)
            handles.append(loop.call_later(BOUND_S / 2, stall_again))

        handles = [loop.call_soon(stall_again)]
        with pytest.raises(TimeoutError):
            async with PatientTimeout(BOUND_S) as timeout:
                await loop.create_future()
        handles[-1].cancel()
        assert timeout.extensions == MAX_EXTENSIONS

    uvloop.run(story())


def test_a_cancel_from_outside_is_not_a_timeout() -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()

        async def wait() -> None:
            async with PatientTimeout(10.0):
                await loop.create_future()

        task = asyncio.ensure_future(wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    uvloop.run(story())
