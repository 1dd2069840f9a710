"""Unit tests for active health checks: the pass/fail counting (properties over any sequence) and
one checker round against a stub pool (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.settings import HealthCheckConfig, Instance
from api_gateway.errors import BadGateway, GatewayError
from api_gateway.types import Response
from api_gateway.upstream.health import HealthChecker, Streak, after_check, probe_head
from api_gateway.upstream.instances import ServiceInstances

results = st.lists(st.booleans(), max_size=40)
thresholds = st.integers(1, 5)
UP, DOWN = Instance("10.0.0.1", 3004), Instance("10.0.0.2", 3004)


def run(results: list[bool], healthy: int, unhealthy: int) -> list[Streak]:
    streak, seen = Streak(True), []
    for passed in results:
        streak = after_check(streak, passed, healthy, unhealthy)
        seen.append(streak)
    return seen


def trailing(results: list[bool]) -> int:
    """How many results at the end equal the last one."""
    count = 0
    for result in reversed(results):
        if result != results[-1]:
            break
        count += 1
    return count


# --- counting -----------------------------------------------------------------------------------


@given(results, thresholds, thresholds)
def test_the_verdict_flips_exactly_when_a_run_reaches_its_threshold(
    sequence: list[bool], healthy: int, unhealthy: int
) -> None:
    verdict = True
    for i, streak in enumerate(run(sequence, healthy, unhealthy)):
        so_far = sequence[: i + 1]
        run_length = trailing(so_far)
        if verdict and not so_far[-1]:
            expected = run_length < unhealthy
        elif not verdict and so_far[-1]:
            expected = run_length >= healthy
        else:
            expected = verdict
        assert streak.healthy == expected
        verdict = streak.healthy


@given(results, thresholds, thresholds)
def test_the_counters_are_the_current_run_and_a_result_never_argues_against_itself(
    sequence: list[bool], healthy: int, unhealthy: int
) -> None:
    before = Streak(True)
    for i, streak in enumerate(run(sequence, healthy, unhealthy)):
        passed = sequence[i]
        assert (streak.passes, streak.failures) == (
            (trailing(sequence[: i + 1]), 0) if passed else (0, trailing(sequence[: i + 1]))
        )
        assert not (passed and before.healthy and not streak.healthy)  # a pass never marks down
        assert not (not passed and not before.healthy and streak.healthy)
        before = streak


def test_three_failures_mark_down_two_passes_mark_up_and_blips_change_nothing() -> None:
    verdicts = [s.healthy for s in run([False, False, True, False, False, False, True, True], 2, 3)]
    assert verdicts == [True, True, True, True, True, False, False, True]


def test_the_probe_is_an_internal_get_of_the_configured_path() -> None:
    assert probe_head("/healthz", "10.0.0.1:3004") == (
        b"GET /healthz HTTP/1.1\r\nhost: 10.0.0.1:3004\r\nx-gateway-internal: true\r\n"
        b"user-agent: api-gateway-health\r\n\r\n"
    )


# --- a checker round ----------------------------------------------------------------------------


class StubPool:
    """Answers each address with a status, or raises the error given for it."""

    def __init__(self, answers: Mapping[tuple[str, int], int | GatewayError]) -> None:
        self.answers = dict(answers)
        self.heads: list[bytes] = []

    async def request(self, address: tuple[str, int], head: bytes, *_: object) -> Response:
        self.heads.append(head)
        answer = self.answers[address]
        if isinstance(answer, GatewayError):
            raise answer
        return Response(answer, [], b"{}")


def checker(pool: StubPool, service: ServiceInstances) -> HealthChecker:
    config = HealthCheckConfig(True, "/health", 100, 1000, 2, 2)
    return HealthChecker({"ticket": service}, {"ticket": config}, pool)


def test_rounds_mark_a_failing_instance_down_and_up_again() -> None:
    service = ServiceInstances("ticket", [UP, DOWN])
    pool = StubPool({("10.0.0.1", 3004): 200, ("10.0.0.2", 3004): 503})
    health = checker(pool, service)

    async def story() -> list[dict[str, bool]]:
        seen = [await health.perform_health_check() for _ in range(2)]
        pool.answers[("10.0.0.2", 3004)] = BadGateway("connection refused")
        seen.append(await health.perform_health_check("ticket"))
        pool.answers[("10.0.0.2", 3004)] = 204
        seen += [await health.perform_health_check() for _ in range(2)]
        return seen

    seen = asyncio.run(story())
    down = [v["ticket/10.0.0.2:3004"] for v in seen]
    assert down == [True, False, False, False, True]
    assert all(v["ticket/10.0.0.1:3004"] for v in seen)
    assert [e.healthy for e in service.endpoints] == [True, True]


def test_instances_that_leave_the_service_are_forgotten() -> None:
    service = ServiceInstances("ticket", [UP, DOWN])
    pool = StubPool({("10.0.0.1", 3004): 200, ("10.0.0.2", 3004): 503})
    health = checker(pool, service)
    asyncio.run(health.check("ticket"))
    service.update([UP])
    asyncio.run(health.check("ticket"))

    assert [e.authority for e in health.streaks["ticket"]] == ["10.0.0.1:3004"]


def test_a_disabled_service_is_not_checked() -> None:
    service = ServiceInstances("ticket", [UP])
    config = HealthCheckConfig(False, "/health", 100, 1000, 2, 2)
    pool: object = StubPool({})
    health = HealthChecker({"ticket": service}, {"ticket": config}, pool)  # type: ignore[arg-type]

    assert asyncio.run(health.perform_health_check()) == {}
