"""A service's caching fields sent on several lines, or with absurd numbers, against a real
gateway: the cache keeps an answer no longer than the strictest reading allows, and a number
of thousands of digits is an answer, not an error.

The search route caches what its service allows; ``/marketplace`` also has a route default of
one minute, which ``Expires`` must cut short when the service says less.
"""

from __future__ import annotations

import itertools
from email.utils import formatdate
from typing import Any

import pytest
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import Reply

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {"routes": {"/marketplace": {"cache": {"ttl_ms": 60_000}}}}


def twice(
    gateway: GatewayProcess,
    services: Fleet,
    service: str,
    route: str,
    headers: tuple[tuple[str, str], ...],
) -> list[RawResponse]:
    """Two reads of a path of this test's own, the service answering with ``headers``."""
    path = f"/api/v1/{route}/{next(_ids)}"
    services[service].respond(Reply(headers=headers, body=b'{"ok": true}'), path=path)
    token = mint()
    return [gateway.get(path, token=token) for _ in range(2)]


def cache_results(responses: list[RawResponse]) -> list[tuple[int, str | None]]:
    return [(r.status, r.header("x-cache")) for r in responses]


def test_a_second_larger_age_line_is_not_ignored(gateway: GatewayProcess, services: Fleet) -> None:
    # Sixty seconds allowed, seventy already spent (said on the second line): stale at once.
    headers = (("Cache-Control", "s-maxage=60"), ("Age", "10"), ("Age", "70"))
    assert cache_results(twice(gateway, services, "search", "search", headers)) == [
        (200, "MISS"),
        (200, "MISS"),
    ]


def test_no_store_on_a_second_cache_control_line_holds(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = (("Cache-Control", "s-maxage=60"), ("Cache-Control", "no-store"))
    assert cache_results(twice(gateway, services, "search", "search", headers)) == [
        (200, "MISS"),
        (200, "MISS"),
    ]


def test_an_expired_answer_is_not_kept_for_the_routes_default(
    gateway: GatewayProcess, services: Fleet
) -> None:
    now = formatdate(usegmt=True)
    for expires in ("0", now):
        headers = (("Cache-Control", "public"), ("Date", now), ("Expires", expires))
        answers = twice(gateway, services, "marketplace", "marketplace", headers)
        assert cache_results(answers) == [(200, "MISS"), (200, "MISS")], expires


def test_a_max_age_of_thousands_of_digits_is_an_answer(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = (("Cache-Control", "s-maxage=" + "9" * 5000),)
    answers = twice(gateway, services, "search", "search", headers)
    assert cache_results(answers) == [(200, "MISS"), (200, "HIT")]
    assert answers[1].body == answers[0].body == b'{"ok": true}'
