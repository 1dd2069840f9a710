"""The traffic port's own endpoints' logic: /ready shares one round of probes per period among
all its callers and sees a change once the period is over; a failed check makes it 503 only when
required (``readiness.require``); what any client learns from /health and /ready (never why a
check failed: that is the admin listener's)."""

from __future__ import annotations

import asyncio

import orjson

from api_gateway.admin import Admin
from api_gateway.types import Request, Response

TTL_MS = 1000.0
CALLERS = 200
INSIDE, OUTSIDE = "127.0.0.1", "203.0.113.7"
SECRET_REASON = "cannot reach 10.1.0.5:3001"


class Clock:
    def __init__(self) -> None:
        self.now_ms = 0.0

    def __call__(self) -> float:
        return self.now_ms


class CountingProbe:
    """A dependency check that counts its calls and waits a turn, as a network call would."""

    def __init__(self) -> None:
        self.calls = 0
        self.reason: str | None = None

    async def __call__(self) -> str | None:
        self.calls += 1
        await asyncio.sleep(0)
        return self.reason


def request(path: str, client_ip: str = INSIDE) -> Request:
    req = Request("GET", path.encode(), [], b"", client_ip)
    req.path = path
    return req


def admin_with(probe: CountingProbe, clock: Clock, required: tuple[str, ...] = ()) -> Admin:
    return Admin({"auth-service": probe}, required, clock_ms=clock, ready_ttl_ms=TTL_MS)


def document(response: Response) -> dict[str, object]:
    assert isinstance(response.body, bytes)
    parsed = orjson.loads(response.body)
    assert isinstance(parsed, dict)
    return parsed


async def flood(admin: Admin, callers: int = CALLERS) -> list[Response]:
    return await asyncio.gather(*(admin.ready(request("/ready")) for _ in range(callers)))


def test_concurrent_ready_calls_share_one_round_of_probes() -> None:
    probe, clock = CountingProbe(), Clock()
    admin = admin_with(probe, clock)

    responses = asyncio.run(flood(admin))

    assert probe.calls == 1
    assert {r.status for r in responses} == {200}


def test_ready_answers_from_the_last_round_within_the_period() -> None:
    probe, clock = CountingProbe(), Clock()
    admin = admin_with(probe, clock, ("auth-service",))

    async def scenario() -> tuple[int, int]:
        await admin.ready(request("/ready"))
        probe.reason = "answered 500"
        clock.now_ms += TTL_MS - 1
        within = await admin.ready(request("/ready"))
        clock.now_ms += 1
        after = await admin.ready(request("/ready"))
        return within.status, after.status

    assert asyncio.run(scenario()) == (200, 503)
    assert probe.calls == 2


def test_a_draining_worker_is_not_ready_without_probing() -> None:
    probe, clock = CountingProbe(), Clock()
    admin = admin_with(probe, clock)
    admin.draining = True

    response = asyncio.run(admin.ready(request("/ready")))

    assert response.status == 503
    assert document(response)["status"] == "draining"
    assert probe.calls == 0


def test_a_failed_check_is_reported_and_blocks_only_when_required() -> None:
    probe, clock = CountingProbe(), Clock()
    probe.reason = SECRET_REASON

    optional = asyncio.run(admin_with(probe, clock).ready(request("/ready", OUTSIDE)))
    required = asyncio.run(
        admin_with(probe, clock, ("auth-service",)).ready(request("/ready", INSIDE))
    )

    assert optional.status == 200
    assert required.status == 503
    for answer in (optional, required):
        assert document(answer)["checks"] == {"auth-service": "failed"}  # never the reason
        assert document(answer)["failed"] == ["auth-service"]


def test_the_admin_listener_learns_why_a_check_failed() -> None:
    probe, clock = CountingProbe(), Clock()
    probe.reason = SECRET_REASON
    admin = admin_with(probe, clock)

    status, body = asyncio.run(admin.readiness_document(reasons=True))

    assert status == 200
    assert body["checks"] == {"auth-service": SECRET_REASON}


def test_health_tells_any_address_only_status_and_uptime() -> None:
    admin = admin_with(CountingProbe(), Clock())

    for address in (OUTSIDE, INSIDE):
        assert set(document(asyncio.run(admin.health(request("/health", address))))) == {
            "status",
            "uptime",
        }
