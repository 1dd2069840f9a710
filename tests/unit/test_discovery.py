"""Unit tests for service discovery: which instance set wins, and the refresh against a fake
registry (no Redis): changes applied, failures keep the known set, outages logged once."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.settings import Instance
from api_gateway.stores import StoreUnavailable
from api_gateway.upstream.discovery import Discovery, choose_instances
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.registry import registry_key

STATIC = [Instance("static", 3004)]
A, B = Instance("10.0.0.1", 3004), Instance("10.0.0.2", 3004)
instances = st.lists(
    st.builds(Instance, st.sampled_from(["a", "b", "c"]), st.integers(1, 3)), max_size=4
)


class FakeRegistry:
    """Answers from a dict, or raises StoreUnavailable while ``down``."""

    def __init__(self) -> None:
        self.registered: dict[str, list[Instance]] = {}
        self.down = False
        self.closed = False

    async def discover(self, service: str) -> list[Instance]:
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:6379 unavailable: connection refused")
        return list(self.registered.get(service, []))

    async def close(self) -> None:
        self.closed = True


def discovery(registry: FakeRegistry | None) -> tuple[Discovery, ServiceInstances]:
    ticket = ServiceInstances("ticket", STATIC)
    return Discovery({"ticket": ticket}, {"ticket": STATIC}, registry, 100, lambda: 0.0), ticket


def current(endpoints: ServiceInstances) -> list[Instance]:
    return [endpoint.instance for endpoint in endpoints.endpoints]


# --- the decision -------------------------------------------------------------------------------


def test_registered_instances_win_over_static_ones() -> None:
    assert choose_instances([A, B], STATIC, STATIC) == [A, B]


def test_an_empty_registry_falls_back_to_static_config() -> None:
    assert choose_instances([], [A], STATIC) == STATIC


def test_a_failed_read_keeps_the_last_known_instances() -> None:
    assert choose_instances(None, [A], STATIC) == [A]


@given(
    instances, instances, st.lists(st.builds(Instance, st.just("s"), st.integers(1, 3)), min_size=1)
)
def test_the_choice_is_never_empty(
    registered: list[Instance], known: list[Instance], static: list[Instance]
) -> None:
    for result in (registered, None):
        assert choose_instances(result, known, static)


def test_the_key_carries_the_service_as_a_cluster_hash_tag() -> None:
    assert registry_key("gateway:registry:", "ticket") == "gateway:registry:{ticket}"


# --- the refresh --------------------------------------------------------------------------------


def test_a_refresh_applies_the_registry_then_falls_back_when_it_empties() -> None:
    registry = FakeRegistry()
    finder, ticket = discovery(registry)

    async def story() -> list[list[Instance]]:
        seen = []
        registry.registered["ticket"] = [A, B]
        await finder.refresh()
        seen.append(current(ticket))
        registry.registered["ticket"] = []
        await finder.refresh()
        seen.append(current(ticket))
        return seen

    assert asyncio.run(story()) == [[A, B], STATIC]


def test_an_outage_keeps_the_instances_and_is_logged_once_then_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = FakeRegistry()
    finder, ticket = discovery(registry)
    registry.registered["ticket"] = [A]

    async def story() -> list[Instance]:
        await finder.refresh()
        registry.down = True
        for _ in range(3):
            await finder.refresh()
        during = current(ticket)
        registry.down = False
        await finder.refresh()
        await finder.refresh()
        return during

    with caplog.at_level(logging.WARNING, "api_gateway.discovery"):
        during = asyncio.run(story())

    assert during == [A]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "unavailable" in messages[0] and "connection refused" in messages[0]
    assert "available again" in messages[1]


def test_healthy_instances_leave_out_those_marked_down_or_ejected() -> None:
    registry = FakeRegistry()
    registry.registered["ticket"] = [A, B, Instance("10.0.0.3", 3004)]
    finder, ticket = discovery(registry)
    asyncio.run(finder.refresh())
    ticket.endpoints[0].healthy = False
    ticket.endpoints[2].ejected_until = 1.0  # the fake clock says 0

    assert finder.get_healthy_instances("ticket") == [B]


def test_instance_state_survives_a_refresh_that_keeps_the_instance() -> None:
    registry = FakeRegistry()
    registry.registered["ticket"] = [A]
    finder, ticket = discovery(registry)
    asyncio.run(finder.refresh())
    ticket.endpoints[0].healthy = False
    registry.registered["ticket"] = [A, B]
    asyncio.run(finder.refresh())

    assert [(e.instance, e.healthy) for e in ticket.endpoints] == [(A, False), (B, True)]


def test_without_a_registry_discovery_is_static_and_starts_nothing() -> None:
    finder, ticket = discovery(None)

    async def story() -> None:
        finder.start()
        assert finder.task is None
        await finder.refresh()
        await finder.close()

    asyncio.run(story())
    assert current(ticket) == STATIC


def test_close_stops_the_loop_and_closes_the_registry() -> None:
    registry = FakeRegistry()
    finder, _ = discovery(registry)

    async def story() -> bool:
        finder.start()
        await asyncio.sleep(0)
        task = finder.task
        await finder.close()
        return task is not None and task.done()

    assert asyncio.run(story())
    assert registry.closed
