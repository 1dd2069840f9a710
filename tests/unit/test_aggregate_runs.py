"""How an aggregate runs its sources, with a fake fetcher on a real event loop: dependencies,
fail-fast on a required failure, optional timeouts and the deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from api_gateway.aggregation.aggregate import Aggregate
from api_gateway.config.loader import build, default_document
from api_gateway.errors import BadGateway, GatewayError
from api_gateway.types import Claims, Request

SECRETS = {"access_secret": "a" * 32, "refresh_secret": "a" * 32}


class FakeFetch:
    """Answers per service: (delay_s, value or exception); records what started and when."""

    def __init__(self, answers: dict[str, tuple[float, Any]]) -> None:
        self.answers, self.started, self.cancelled = answers, list[str](), list[str]()
        self.events: list[str] = []  # "start <target>" and "end <service>", in order

    async def __call__(self, service: str, target: str, budget_ms: float, _: Request) -> object:
        self.started.append(target)
        self.events.append(f"start {target}")
        delay, value = self.answers[service]
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(service)
            raise
        self.events.append(f"end {service}")
        if isinstance(value, Exception):
            raise value
        return value


def event_details(timeout_ms: int = 1000) -> Any:
    document = default_document()
    document["jwt"].update(SECRETS)
    document["aggregates"]["event-details"]["timeout_ms"] = timeout_ms
    for key in ("availability", "listings"):
        document["aggregates"]["event-details"]["sources"][key]["timeout_ms"] = 100
    return next(a for a in build(document).aggregates if a.name == "event-details")


def run(answers: dict[str, tuple[float, Any]], timeout_ms: int = 1000) -> tuple[Any, FakeFetch]:
    fetch = FakeFetch(answers)

    async def scenario() -> Any:
        loop = asyncio.get_running_loop()
        aggregate = Aggregate(
            event_details(timeout_ms), "/api/v1/aggregate", fetch, lambda: loop.time() * 1000
        )
        request = Request("GET", b"/api/v1/aggregate/events/e1", [], b"", "127.0.0.1")
        request.path = "/api/v1/aggregate/events/e1"
        request.claims = Claims("u1", "t1", "customer", "", 0.0)
        try:
            response = await aggregate(request)
        except GatewayError as error:
            return error
        return orjson.loads(response.body)  # type: ignore[arg-type]

    return asyncio.run(scenario()), fetch


HEALTHY = {
    "event": (0.0, {"venueId": "v1"}),
    "venue": (0.0, {"id": "v1"}),
    "ticket": (0.0, {"available": 3}),
    "marketplace": (0.0, []),
}


def test_a_dependent_source_starts_with_its_dependencys_answer() -> None:
    document, fetch = run(HEALTHY)

    assert document["meta"]["complete"] is True
    assert fetch.started[-1] == "/api/v1/venues/v1"


def test_the_venue_does_not_wait_for_slow_optional_sources() -> None:
    answers = {**HEALTHY, "ticket": (0.05, {"available": 3})}
    _, fetch = run(answers)

    # The venue started before the ticket service's answer arrived.
    assert fetch.events.index("start /api/v1/venues/v1") < fetch.events.index("end ticket")


def test_a_required_failure_cancels_the_rest_and_reports_them_skipped() -> None:
    answers = {**HEALTHY, "event": (0.0, BadGateway("event-service answered 500"))}
    answers["marketplace"] = (5.0, [])
    error, fetch = run(answers)

    assert isinstance(error, BadGateway)
    assert error.detail == "event: event-service answered 500"
    sources = error.extensions["meta"]["sources"]  # type: ignore[index]
    assert sources["event"]["status"] == "failed"
    assert sources["venue"] == {"status": "skipped"}
    assert sources["listings"] == {"status": "skipped"}
    assert fetch.cancelled == ["marketplace"]


def test_an_optional_source_past_its_timeout_falls_back() -> None:
    document, _ = run({**HEALTHY, "marketplace": (5.0, ["late"])})

    assert document["data"]["listings"] == []
    assert document["meta"]["sources"]["listings"]["status"] == "fallback"
    assert document["meta"]["sources"]["listings"]["error"] == "no answer within 100 ms"


@pytest.mark.parametrize("slow", ["event", "venue"])
def test_a_required_source_past_the_deadline_is_504(slow: str) -> None:
    error, _ = run({**HEALTHY, slow: (5.0, {"venueId": "v1"})}, timeout_ms=200)

    assert isinstance(error, GatewayError) and error.status == 504
    assert error.extensions["meta"]["sources"][slow]["status"] == "failed"  # type: ignore[index]
