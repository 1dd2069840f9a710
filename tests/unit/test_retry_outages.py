"""The retry budget's outages: an instance that dies with requests in flight is one event.

Pure: the budget is given explicit times (ms) and instance names; no clock, no I/O.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from support.resilience import service_config, upstream_service

from api_gateway.config.settings import RetryConfig
from api_gateway.errors import BadGateway, UpstreamTimeout
from api_gateway.upstream.retry import OWN_SLOT, RetryBudget

RETRY = RetryConfig(3, 100, 2_000, None, 20, 3)  # a floor of 3 slots


def budget_with(requests: int) -> RetryBudget:
    budget = RetryBudget(RETRY)
    budget.active_requests = requests
    return budget


def test_every_request_in_flight_on_a_dying_instance_gets_its_failover() -> None:
    budget = budget_with(8)
    # Eight attempts sent at t=10..17 to instance a; a dies at t=100.
    claims = [budget.claim(None, "a", 10 + n, 100 + n, lost=True) for n in range(8)]

    assert claims == ["a"] * 8
    assert budget.active_retries == 1  # one outage, one slot
    assert budget.allows()  # two slots still free for anything else


def test_the_outage_slot_is_freed_when_its_last_retry_ends() -> None:
    budget = budget_with(4)
    claims = [budget.claim(None, "a", 10, 100, lost=True) for _ in range(4)]
    for claim in claims[:3]:
        budget.release(claim)
    assert budget.active_retries == 1
    budget.release(claims[3])
    assert (budget.active_retries, budget.outages) == (0, {})


def test_an_attempt_sent_after_the_outage_began_takes_a_slot_of_its_own() -> None:
    budget = budget_with(4)
    budget.claim(None, "a", 10, 100, lost=True)
    # Sent to the dead instance before it was ejected: the budget caps these.
    late = [budget.claim(None, "a", 150 + n, 200 + n, lost=True) for n in range(3)]

    assert late == [OWN_SLOT, OWN_SLOT, None]
    assert budget.active_retries == 3


def test_answers_and_timeouts_of_a_live_instance_each_take_a_slot() -> None:
    budget = budget_with(4)
    claims = [budget.claim(None, "a", 10, 100, lost=False) for _ in range(4)]

    assert claims == [OWN_SLOT, OWN_SLOT, OWN_SLOT, None]
    assert budget.outages == {}


def test_a_second_retry_of_a_failover_needs_a_slot_of_its_own() -> None:
    budget = budget_with(10)
    claims = [budget.claim(None, "a", 10, 100, lost=True) for _ in range(5)]
    # Each failover failed again (on b, sent after a's outage began): one slot each now.
    again = [budget.claim(claim, "b", 120, 150, lost=False) for claim in claims]

    # The outage keeps its slot until its last failover leaves it, then that slot is free.
    assert again == [OWN_SLOT, OWN_SLOT, None, None, OWN_SLOT]
    assert budget.outages == {}
    assert budget.active_retries == 3


def test_a_request_keeps_its_own_slot_while_the_budget_allows() -> None:
    budget = budget_with(1)
    claim = budget.claim(None, "a", 10, 100, lost=False)
    assert budget.claim(claim, "b", 110, 120, lost=False) == OWN_SLOT
    assert budget.active_retries == 1


def test_a_refused_request_gives_back_what_it_held() -> None:
    budget = budget_with(1)
    held = [budget.claim(None, "a", 10, 100, lost=False) for _ in range(3)]
    assert budget.claim(held[0], "b", 110, 120, lost=False) is None  # 3 of 3 slots in use
    assert budget.active_retries == 2


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 50), st.booleans(), st.booleans()),
        max_size=60,
    )
)
def test_slots_never_exceed_the_cap_plus_outages_and_all_come_back(
    steps: list[tuple[str, int, bool, bool]],
) -> None:
    """Own slots stay within the cap; everything claimed is returned in the end."""
    budget = budget_with(5)
    held: list[str] = []
    now = 0
    for instance, age, lost, release in steps:
        now += 10
        if release and held:
            budget.release(held.pop(0))
            continue
        claim = budget.claim(None, instance, now - age, now, lost)
        if claim is not None:
            held.append(claim)
        own = held.count(OWN_SLOT)
        assert own + len(budget.outages) == budget.active_retries
        assert budget.active_retries <= 3
    for claim in held:
        budget.release(claim)
    assert (budget.active_retries, budget.outages) == (0, {})


# --- the breaker's view of the same event ---------------------------------------------------------


def test_posts_lost_with_a_dying_instance_are_one_failure_of_the_service() -> None:
    service = upstream_service(service_config())
    doomed, other = service.endpoints.endpoints
    # Six POSTs in flight on the doomed instance (sent at t=0..5) all break at t=100.
    for n in range(6):
        service.gave_up(BadGateway("closed"), 100 + n, doomed, float(n))

    assert service.breaker.stats()["failures"] == 1
    # A request sent to it after the break is a failure of its own, and so is a timeout.
    service.gave_up(BadGateway("refused"), 200, doomed, 150)
    service.gave_up(UpstreamTimeout("slow"), 300, other, 0)
    assert service.breaker.stats()["failures"] == 3


def test_an_instance_that_served_again_starts_a_new_break() -> None:
    service = upstream_service(service_config())
    instance = service.endpoints.endpoints[0]
    service.gave_up(BadGateway("closed"), 100, instance, 0)
    service.succeeded(instance, 150)
    service.gave_up(BadGateway("closed"), 200, instance, 50)  # in flight before, yet counted

    assert service.breaker.stats()["failures"] == 2
