"""What is retried, the backoff's bounds, the retry budget, outlier ejection and deadlines."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.resilience import Clock, run

from api_gateway.config.settings import Instance, OutlierConfig, RetryConfig
from api_gateway.errors import (
    BadGateway,
    ConnectFailed,
    ConnectTimeout,
    DeadlineExceeded,
    GatewayError,
    PayloadTooLarge,
    RequestTimeout,
    UpstreamTimeout,
)
from api_gateway.upstream.deadline import Deadline, TimeoutController
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.outlier import OutlierDetector
from api_gateway.upstream.retry import Backoff, RetryBudget, retryable_error, retryable_status

RETRY = RetryConfig(3, 100, 2_000, None, 20, 3)


# --- what is retried ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "repeatable", "replayable", "expected"),
    [
        (ConnectFailed(), False, False, True),
        (ConnectTimeout(), False, False, True),
        (BadGateway(), True, True, True),
        (UpstreamTimeout(), True, True, True),
        (BadGateway(), False, True, False),
        (UpstreamTimeout(), False, True, False),
        (BadGateway(), True, False, False),
        (PayloadTooLarge(), True, True, False),
        (RequestTimeout(), True, True, False),
        (GatewayError(), True, True, False),
    ],
)
def test_which_errors_are_retried(
    error: GatewayError, repeatable: bool, replayable: bool, expected: bool
) -> None:
    assert retryable_error(error, repeatable, replayable) is expected


@given(st.integers(100, 599), st.booleans())
def test_only_gateway_statuses_of_repeatable_requests_are_retried(
    status: int, repeatable: bool
) -> None:
    assert retryable_status(status, repeatable) is (repeatable and status in (502, 503, 504))


# --- backoff --------------------------------------------------------------------------------------


@given(st.integers(1, 60), st.integers(0, 2**32))
def test_full_jitter_stays_within_its_exponential_ceiling(retry: int, seed: int) -> None:
    backoff = Backoff(RETRY, random.Random(seed).uniform)
    delay = backoff.delay_ms(retry)
    assert 0 <= delay <= min(2_000, 100 * 2 ** (retry - 1))


def test_backoff_ceilings_double_up_to_the_maximum() -> None:
    backoff = Backoff(RETRY, lambda low, high: high)
    ceilings = [backoff.delay_ms(n) for n in range(1, 8)]
    assert ceilings == [100, 200, 400, 800, 1600, 2000, 2000]


# --- budget ---------------------------------------------------------------------------------------


def test_the_budget_always_allows_its_minimum() -> None:
    budget = RetryBudget(RETRY)
    budget.active_retries = 2
    assert budget.allows()
    budget.active_retries = 3
    assert not budget.allows()


@given(st.integers(0, 1000), st.integers(0, 300))
def test_the_budget_is_a_share_of_requests_in_flight(requests: int, retries: int) -> None:
    budget = RetryBudget(RETRY)
    budget.active_requests, budget.active_retries = requests, retries
    assert budget.allows() is (retries < max(3, requests * 0.2))


# --- outlier detection ----------------------------------------------------------------------------


def detector(count: int = 4) -> tuple[OutlierDetector, ServiceInstances]:
    service = ServiceInstances("ticket", [Instance(f"h{n}", 80) for n in range(count)])
    return OutlierDetector(OutlierConfig(5, 30_000, 50), service), service


def test_five_failures_in_a_row_eject_for_the_base_time() -> None:
    outlier, service = detector()
    endpoint = service.endpoints[0]
    assert [outlier.failure(endpoint, 0) for _ in range(5)] == [False] * 4 + [True]
    assert endpoint.ejected_until == 30_000
    assert not endpoint.available(29_999) and endpoint.available(30_000)


def test_a_success_resets_the_count() -> None:
    outlier, service = detector()
    endpoint = service.endpoints[0]
    for _ in range(4):
        outlier.failure(endpoint, 0)
    outlier.success(endpoint, 0)
    assert not any(outlier.failure(endpoint, 0) for _ in range(4))


def test_each_ejection_lasts_longer_and_quiet_time_shortens_it_again() -> None:
    outlier, service = detector()
    endpoint = service.endpoints[0]
    for _ in range(5):
        outlier.failure(endpoint, 0)
    for _ in range(5):
        outlier.failure(endpoint, 30_000)
    assert (endpoint.ejections, endpoint.ejected_until) == (2, 90_000)
    outlier.success(endpoint, 100_000)  # ejected 10 s ago: too soon to forgive
    assert endpoint.ejections == 2
    outlier.success(endpoint, 120_000)
    assert endpoint.ejections == 1
    outlier.success(endpoint, 130_000)
    assert endpoint.ejections == 1
    outlier.success(endpoint, 150_000)
    assert endpoint.ejections == 0


def test_at_most_half_the_instances_are_ejected() -> None:
    outlier, service = detector(4)
    ejected = [
        any(outlier.failure(endpoint, 0) for _ in range(5)) for endpoint in service.endpoints
    ]
    assert ejected == [True, True, False, False]


def test_one_instance_of_two_may_be_ejected() -> None:
    outlier, service = detector(2)
    first, second = service.endpoints
    assert any(outlier.failure(first, 0) for _ in range(5))
    assert not any(outlier.failure(second, 0) for _ in range(5))


# --- deadlines ------------------------------------------------------------------------------------


def test_a_deadline_counts_down() -> None:
    clock = Clock(0)
    deadline = Deadline(2_500, clock)
    clock.now_ms = 1_000
    assert deadline.remaining_ms() == 1_500
    clock.now_ms = 9_000
    assert deadline.remaining_ms() == -6_500


def test_a_timeout_controller_gives_each_step_what_is_left() -> None:
    clock = Clock(0)
    controller = TimeoutController(Deadline(1_000, clock))
    assert controller.step_budget_ms() == 1_000
    assert controller.step_budget_ms(cap_ms=300) == 300
    clock.now_ms = 800
    assert controller.step_budget_ms(cap_ms=300) == 200
    clock.now_ms = 1_000
    with pytest.raises(DeadlineExceeded):
        controller.step_budget_ms()


def test_a_step_past_the_deadline_is_cancelled_with_504() -> None:
    async def scenario() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        controller = TimeoutController(Deadline(20, lambda: loop.time() * 1000))
        fast = await controller.run(asyncio.sleep(0, result="fast"))
        cancelled = False

        async def slow() -> str:
            nonlocal cancelled
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled = True
                raise
            return "slow"

        with pytest.raises(DeadlineExceeded) as info:
            await controller.run(slow())
        assert info.value.status == 504
        return fast, cancelled

    assert run(scenario()) == ("fast", True)


def test_a_step_after_the_deadline_never_starts() -> None:
    started = False

    async def step() -> None:
        nonlocal started
        started = True

    controller = TimeoutController(Deadline(0, Clock(0)))
    with pytest.raises(DeadlineExceeded):
        run(controller.run(step()))
    assert not started
