"""The terminal handler's decisions: deadline, breaker, retries and their budget, instance choice.

The pool is scripted (it answers attempts in order) and the clock is manual, so every case is
exact and instant; the integration tests show the same against real upstream servers.
"""

from __future__ import annotations

import dataclasses

import pytest
from support.resilience import (
    Clock,
    ScriptedPool,
    request,
    run,
    service_config,
    upstream_service,
)

from api_gateway.config.settings import BreakerConfig, RetryConfig
from api_gateway.errors import (
    BadGateway,
    CircuitOpen,
    ConnectFailed,
    ConnectTimeout,
    PayloadTooLarge,
    UpstreamTimeout,
)
from api_gateway.types import Request, Response
from api_gateway.upstream.breaker import State
from api_gateway.upstream.call import UpstreamCall
from api_gateway.upstream.service import UpstreamService


def ok() -> Response:
    return Response(200, [], b"ok")


def status(code: int) -> Response:
    return Response(code, [], b"{}")


class Harness:
    def __init__(self, *script: object, key_retries: bool = False, **config: object) -> None:
        self.clock = Clock()
        self.service: UpstreamService = upstream_service(service_config(**config))  # type: ignore[arg-type]
        self.pool = ScriptedPool(self.clock, *script)  # type: ignore[arg-type]
        self.call = UpstreamCall(
            self.service,
            self.pool,
            10_000,
            key_retries,
            self.clock,
            self.clock.sleep,
        )

    def send(self, r: Request | None = None) -> Response:
        return run(self.call(r or request()))


def retry(attempts: int = 2, **changes: object) -> RetryConfig:
    return dataclasses.replace(RetryConfig(attempts, 100, 2_000, None, 20, 3), **changes)  # type: ignore[arg-type]


# --- a plain attempt ----------------------------------------------------------------------------


def test_a_success_is_one_attempt_with_the_deadline_passed_upstream() -> None:
    h = Harness(ok())
    assert h.send().status == 200
    [call] = h.pool.calls
    assert call.header(b"x-request-deadline-ms") == b"10000"
    assert call.timeout_s == 10.0
    assert call.header(b"host") in (b"10.0.0.1:3004", b"10.0.0.2:3004")


def test_the_per_try_timeout_caps_each_attempt() -> None:
    h = Harness(ok(), retry=retry(per_try_timeout_ms=1_500))
    h.send()
    assert h.pool.calls[0].timeout_s == 1.5
    assert h.pool.calls[0].header(b"x-request-deadline-ms") == b"1500"


def test_a_retry_gets_only_what_is_left_of_the_deadline() -> None:
    h = Harness((status(503), 9_000), ok(), retry=retry(base_ms=10))
    assert h.send().status == 200
    second = h.pool.calls[1]
    left_ms = 10_000 - 9_000 - h.clock.slept[0]
    assert second.timeout_s == pytest.approx(left_ms / 1000)
    assert second.header(b"x-request-deadline-ms") == b"%d" % int(left_ms)


def test_a_retry_wait_that_would_pass_the_deadline_is_not_taken() -> None:
    h = Harness((status(503), 9_990), retry=retry(attempts=3, base_ms=5_000))
    response = h.send()
    assert response.status == 503
    assert len(h.pool.calls) == 1


# --- what is retried ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [502, 503, 504])
def test_an_idempotent_request_is_retried_on_another_instance(code: int) -> None:
    h = Harness(status(code), ok())
    assert h.send().status == 200
    first, second = h.pool.addresses
    assert first != second
    assert h.service.events["retry"] == 1


@pytest.mark.parametrize("error", [BadGateway("reset"), UpstreamTimeout("slow")])
def test_an_idempotent_request_is_retried_after_an_error(error: Exception) -> None:
    h = Harness(error, ok())
    assert h.send().status == 200
    assert len(h.pool.calls) == 2


@pytest.mark.parametrize("code", [400, 401, 404, 409, 429, 500, 501])
def test_other_statuses_are_never_retried(code: int) -> None:
    h = Harness(status(code), ok())
    assert h.send().status == code
    assert len(h.pool.calls) == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_request_that_reached_the_service_is_never_sent_twice(method: str) -> None:
    h = Harness(status(503), ok(), retry=retry(attempts=5))
    assert h.send(request(method, b"{}")).status == 503
    h2 = Harness(BadGateway("reset after the body"), ok(), retry=retry(attempts=5))
    with pytest.raises(BadGateway):
        h2.send(request(method, b"{}"))
    assert (len(h.pool.calls), len(h2.pool.calls)) == (1, 1)


@pytest.mark.parametrize("error", [ConnectFailed("refused"), ConnectTimeout("no syn-ack")])
def test_a_request_never_sent_is_retried_whatever_its_method(error: Exception) -> None:
    h = Harness(error, ok())
    assert h.send(request("POST", b"{}")).status == 200
    assert len(h.pool.calls) == 2


def test_a_post_with_an_idempotency_key_is_retried_where_the_route_allows() -> None:
    keyed = request("POST", b"{}", [(b"idempotency-key", b"k-1")])
    allowed = Harness(status(503), ok(), key_retries=True)
    refused = Harness(status(503), ok(), key_retries=False)
    no_key = Harness(status(503), ok(), key_retries=True)
    assert allowed.send(keyed).status == 200
    assert refused.send(keyed).status == 503
    assert no_key.send(request("POST", b"{}")).status == 503


class Stream:
    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration

    def abort(self) -> None:
        pass


def test_a_streamed_body_is_not_replayed_but_a_refused_connection_is_retried() -> None:
    sent = Harness(BadGateway("reset"), ok())
    with pytest.raises(BadGateway):
        sent.send(request("PUT", Stream()))
    unsent = Harness(ConnectFailed("refused"), ok())
    assert unsent.send(request("PUT", Stream())).status == 200
    assert (len(sent.pool.calls), len(unsent.pool.calls)) == (1, 2)


def test_attempts_are_capped_per_service() -> None:
    h = Harness(*[status(503)] * 10, retry=retry(attempts=3))
    assert h.send().status == 503
    assert len(h.pool.calls) == 3
    assert len(h.clock.slept) == 2
    assert h.clock.slept[0] < 100 and h.clock.slept[1] < 200


def test_the_budget_refuses_retries_beyond_its_share() -> None:
    h = Harness(status(503), ok(), retry=retry(budget_pct=0, budget_min_concurrent=0))
    assert h.send().status == 503
    assert h.service.events["budget_exhausted"] == 1
    assert len(h.pool.calls) == 1


def test_the_budget_counts_are_returned_after_every_request() -> None:
    h = Harness(status(503), ok(), BadGateway("x"), ok(), status(404))
    for _ in range(3):
        h.send()
    assert (h.service.budget.active_requests, h.service.budget.active_retries) == (0, 0)


def test_an_error_that_is_not_the_service_s_is_raised_and_not_counted() -> None:
    h = Harness(PayloadTooLarge("too big"), ok())
    with pytest.raises(PayloadTooLarge):
        h.send(request("POST", Stream()))
    assert h.service.breaker.stats()["calls"] == 0
    assert len(h.pool.calls) == 1


# --- the breaker ----------------------------------------------------------------------------------


def breaking(*script: object) -> Harness:
    return Harness(
        *script,
        retry=retry(attempts=1),
        circuit_breaker=BreakerConfig(50, 30_000, 4),
    )


def test_an_open_circuit_answers_503_with_retry_after_without_calling() -> None:
    h = breaking(*[status(502)] * 4)
    for _ in range(4):
        h.send()
    assert h.service.breaker.state is State.OPEN
    h.clock.now_ms += 10_000
    with pytest.raises(CircuitOpen) as info:
        h.send()
    assert info.value.status == 503
    assert dict(info.value.headers)[b"retry-after"] == b"20"
    assert len(h.pool.calls) == 4
    assert h.service.events["reject"] == 1


def test_one_path_answering_500_never_opens_the_circuit() -> None:
    """A 500 is the answer to that request, not the service's health: ten of them from one
    client's path leave the breaker closed; the same ten as refused connections open it."""
    h = breaking(*[status(500)] * 10)
    for _ in range(10):
        assert h.send().status == 500
    assert h.service.breaker.state is State.CLOSED
    assert h.service.breaker.stats()["failures"] == 0

    h = breaking(*[ConnectFailed("refused")] * 10)
    for _ in range(4):
        with pytest.raises(ConnectFailed):
            h.send()
    assert h.service.breaker.state is State.OPEN


@pytest.mark.parametrize("code", [502, 503, 504])
def test_gateway_and_availability_errors_count_against_the_service(code: int) -> None:
    h = breaking(*[status(code)] * 4)
    for _ in range(4):
        h.send()
    assert h.service.breaker.state is State.OPEN


def test_which_statuses_count_is_configurable() -> None:
    h = Harness(
        *[status(500)] * 4,
        retry=retry(attempts=1),
        circuit_breaker=BreakerConfig(50, 30_000, 4, failure_statuses=frozenset({500, 503})),
    )
    for _ in range(4):
        h.send()
    assert h.service.breaker.state is State.OPEN


def test_a_500_still_counts_against_its_instance() -> None:
    """Outlier detection keeps its own rule: 5xx in a row eject an instance."""
    h = Harness(*[status(500)] * 5, retry=retry(attempts=1), instances=1)
    for _ in range(5):
        h.send()
    (instance,) = h.service.endpoints.endpoints
    assert instance.ejections == 1


def test_a_successful_probe_closes_the_circuit() -> None:
    h = breaking(*[BadGateway("x")] * 4, ok(), ok())
    for _ in range(4):
        with pytest.raises(BadGateway):
            h.send()
    h.clock.now_ms += 30_000
    assert h.send().status == 200
    assert h.service.breaker.state is State.CLOSED
    assert [h.service.events[e] for e in ("open", "halfOpen", "close")] == [1, 1, 1]


def test_a_failed_probe_reopens_and_is_not_retried() -> None:
    h = Harness(
        *[status(503)] * 8,
        status(503),
        ok(),
        retry=retry(attempts=2),
        circuit_breaker=BreakerConfig(50, 30_000, 4),
    )
    for _ in range(4):
        h.send()  # four requests, two attempts each
    assert h.service.breaker.state is State.OPEN
    h.clock.now_ms += 30_000
    assert h.send().status == 503
    assert h.service.breaker.state is State.OPEN
    assert len(h.pool.calls) == 9


def test_the_breaker_counts_requests_not_attempts() -> None:
    h = Harness(
        *[status(503), ok()] * 6,
        retry=retry(attempts=2),
        circuit_breaker=BreakerConfig(50, 30_000, 4),
    )
    for _ in range(6):
        assert h.send().status == 200  # every request recovered on a retry
    assert h.service.breaker.state is State.CLOSED
    assert h.service.breaker.stats()["failures"] == 0
    assert h.service.events["retry"] == 6


def test_timeouts_count_as_timeout_events() -> None:
    h = breaking(UpstreamTimeout("slow"))
    with pytest.raises(UpstreamTimeout):
        h.send()
    assert h.service.events["timeout"] == 1


# --- instances ------------------------------------------------------------------------------------


def test_an_instance_failing_in_a_row_is_ejected_and_skipped() -> None:
    h = Harness(
        *[ConnectFailed("down")] * 20,
        retry=retry(attempts=1),
        instances=3,
        circuit_breaker=BreakerConfig(50, 30_000, 1_000),
    )
    for _ in range(15):
        with pytest.raises(ConnectFailed):
            h.send()
    ejected = [e for e in h.service.endpoints.endpoints if e.ejected_until > h.clock.now_ms]
    assert len(ejected) == 1  # 50 % of 3 instances, rounded down
    h.pool.script = [ok()] * 10
    before = len(h.pool.calls)
    for _ in range(10):
        h.send()
    assert ejected[0].address not in [c.address for c in h.pool.calls[before:]]


def test_with_every_instance_unavailable_the_gateway_tries_anyway() -> None:
    h = Harness(ok(), instances=2)
    for endpoint in h.service.endpoints.endpoints:
        endpoint.healthy = False
    assert h.send().status == 200
    assert h.service.panicking
    assert h.service.events["panic"] == 1
    for endpoint in h.service.endpoints.endpoints:
        endpoint.healthy = True
    h.send()
    assert not h.service.panicking


def test_in_flight_counts_return_to_zero() -> None:
    h = Harness(status(503), BadGateway("x"), ok())
    with pytest.raises(BadGateway):
        h.send()
    h.send()
    assert [e.in_flight for e in h.service.endpoints.endpoints] == [0, 0]
