"""The seen-events log in memory (webhook_events.py): claims, marks, releases and expiry on an
injected clock, and its bound."""

from __future__ import annotations

import asyncio

from api_gateway.webhook_events import CLAIMED, IN_FLIGHT, SEEN, MemoryEvents

DAY_MS = 86_400_000
IN_FLIGHT_MS = 40_000


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000.0

    def __call__(self) -> float:
        return self.now_ms


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def sequence(events: MemoryEvents, clock: Clock) -> list[int]:
    first = await events.claim("evt_1", "a", IN_FLIGHT_MS)
    concurrent = await events.claim("evt_1", "b", IN_FLIGHT_MS)
    await events.seen("evt_1", DAY_MS)
    later = await events.claim("evt_1", "c", IN_FLIGHT_MS)
    clock.now_ms += DAY_MS
    after_a_day = await events.claim("evt_1", "d", IN_FLIGHT_MS)
    return [first, concurrent, later, after_a_day]


def test_an_event_is_claimed_then_in_flight_then_seen_until_it_expires() -> None:
    clock = Clock()

    assert run(sequence(MemoryEvents(100, clock), clock)) == [CLAIMED, IN_FLIGHT, SEEN, CLAIMED]


async def released(events: MemoryEvents) -> list[int]:
    await events.claim("evt_1", "a", IN_FLIGHT_MS)
    await events.release("evt_1", "someone-else")  # not its claim: kept
    kept = await events.claim("evt_1", "b", IN_FLIGHT_MS)
    await events.release("evt_1", "a")
    return [kept, await events.claim("evt_1", "c", IN_FLIGHT_MS)]


def test_a_released_claim_lets_the_next_delivery_through_and_only_its_owner_releases() -> None:
    assert run(released(MemoryEvents(100, Clock()))) == [IN_FLIGHT, CLAIMED]


async def abandoned(events: MemoryEvents, clock: Clock) -> list[int]:
    await events.claim("evt_1", "a", IN_FLIGHT_MS)
    clock.now_ms += IN_FLIGHT_MS - 1
    before = await events.claim("evt_1", "b", IN_FLIGHT_MS)
    clock.now_ms += 1
    return [before, await events.claim("evt_1", "c", IN_FLIGHT_MS)]


def test_a_claim_nobody_settles_expires_by_itself() -> None:
    clock = Clock()

    assert run(abandoned(MemoryEvents(100, clock), clock)) == [IN_FLIGHT, CLAIMED]


async def overfilled(events: MemoryEvents) -> list[int]:
    for number in range(10):
        await events.seen(f"evt_{number}", DAY_MS)
    await events.seen("evt_0", DAY_MS)  # written again: the youngest now
    return [await events.claim(f"evt_{n}", "x", IN_FLIGHT_MS) for n in (0, 1, 2, 9)]


def test_past_its_bound_the_oldest_events_are_forgotten_first() -> None:
    events = MemoryEvents(8, Clock())

    outcome = run(overfilled(events))

    # evt_1 and evt_2 were the oldest and made room (each claim then pushes out another).
    assert outcome == [SEEN, CLAIMED, CLAIMED, SEEN]
    assert len(events.events) <= 8
