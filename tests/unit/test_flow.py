"""Flow control: reading paused for reasons, writing paused, the drain waiter."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from api_gateway.http.flow import BACKLOG, BODY, Flow


class Transport:
    """What ``Flow`` asks of a transport: counts the calls."""

    def __init__(self) -> None:
        self.pauses = 0
        self.resumes = 0

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1


def flow_on(transport: Transport, loop: asyncio.AbstractEventLoop | None = None) -> Flow:
    # Reading needs no loop: only a drain waits on one.
    flow = Flow(loop or cast(asyncio.AbstractEventLoop, object()))
    flow.transport = transport  # type: ignore[assignment]
    return flow


def test_reading_resumes_only_once_every_reason_is_gone() -> None:
    transport = Transport()
    flow = flow_on(transport)
    assert flow.pause_reading(BODY)
    assert not flow.pause_reading(BACKLOG)  # paused already: the transport is not asked again
    assert not flow.resume_reading(BODY)  # the backlog still holds it
    assert flow.reading_paused == BACKLOG
    assert flow.resume_reading(BACKLOG)
    assert (transport.pauses, transport.resumes, flow.reading_paused) == (1, 1, 0)


def test_resuming_a_reason_not_held_does_nothing() -> None:
    transport = Transport()
    flow = flow_on(transport)
    assert not flow.resume_reading()
    flow.pause_reading(BACKLOG)
    assert not flow.resume_reading(BODY)
    assert transport.resumes == 0


def test_stopped_reading_never_resumes() -> None:
    transport = Transport()
    flow = flow_on(transport)
    flow.pause_reading()
    flow.stop_reading()
    assert not flow.resume_reading()
    assert transport.resumes == 0


def test_a_lost_connection_is_neither_paused_nor_resumed() -> None:
    transport = Transport()
    flow = flow_on(transport)
    flow.lost(ConnectionResetError())
    assert not flow.pause_reading()
    assert not flow.resume_reading()
    assert (transport.pauses, transport.resumes) == (0, 0)


def test_drain_returns_at_once_while_writing_is_not_paused() -> None:
    async def main() -> None:
        flow = flow_on(Transport(), asyncio.get_running_loop())
        await flow.drain()

    asyncio.run(main())


def test_drain_waits_for_writing_to_resume() -> None:
    async def main() -> list[str]:
        flow = flow_on(Transport(), asyncio.get_running_loop())
        flow.pause_writing()
        seen: list[str] = []

        async def writer() -> None:
            await flow.drain()
            seen.append("drained")

        tasks = [asyncio.create_task(writer()), asyncio.create_task(writer())]
        await asyncio.sleep(0)
        assert seen == []
        flow.resume_writing()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(main()) == ["drained", "drained"]


def test_drain_fails_when_the_connection_is_lost() -> None:
    async def main() -> None:
        flow = flow_on(Transport(), asyncio.get_running_loop())
        flow.pause_writing()
        waiting = asyncio.create_task(flow.drain())
        await asyncio.sleep(0)
        flow.lost(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await waiting
        with pytest.raises(ConnectionResetError):  # and any drain after it
            await flow.drain()

    asyncio.run(main())
