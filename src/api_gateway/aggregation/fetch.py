"""One source call: a GET through the service's resilient path, its answer as JSON.

The call is an ``UpstreamCall`` like any proxied request (the service's breaker, balancer,
outlier detection and retries), given the time the source may take as its deadline, so every
attempt tells the service what is left in ``x-request-deadline-ms``. It carries the headers
``HeaderTrust`` decided for the client's request (identity from the verified token, request
id, ``x-gateway-internal: true``, forwarded-for) and the client's ``Authorization`` for
services that check the token themselves; nothing else of the client's request.

Before it is sent, the source's path and query pass venue isolation exactly as a client's
request to them would: the path was built from data (the client's ids, another service's
answer), and an event of tenant A must not fetch a venue of tenant B for its caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson

from api_gateway.errors import BadGateway, Forbidden, GatewayError, RouteNotFound
from api_gateway.policies.tenancy import VenueIsolation
from api_gateway.types import Headers, Pool, Request
from api_gateway.upstream.call import AttemptHook, UpstreamCall
from api_gateway.upstream.clients import read_body
from api_gateway.upstream.service import UpstreamService

GATEWAY_HEADERS: Headers = [(b"accept", b"application/json"), (b"user-agent", b"api-gateway")]
FORWARDED_CLIENT_HEADERS: Final = frozenset({b"authorization"})
# A required source's own 4xx that says something true about the client's request.
PASSED_ON: Final = {404: RouteNotFound, 403: Forbidden}


class SourceAnswered(GatewayError):
    """A source answered, but not with a 2xx JSON document."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.answered = status

    def as_problem(self) -> GatewayError:
        return PASSED_ON.get(self.answered, BadGateway)(self.detail)


# What an aggregate calls per source: (service, target, budget_ms, client request) -> JSON.
Fetch = Callable[[str, str, float, Request], Awaitable[object]]


class Fetcher:
    def __init__(
        self,
        services: Mapping[str, UpstreamService],
        pool: Pool,
        clock_ms: Callable[[], float],
        isolation: VenueIsolation | None = None,
        around_attempt: AttemptHook | None = None,
    ) -> None:
        self.services, self.pool, self.clock_ms = services, pool, clock_ms
        self.isolation = isolation  # None: venue isolation is off
        self.around_attempt = around_attempt  # tracing's client span, when on

    async def __call__(
        self, service_name: str, target: str, budget_ms: float, client: Request
    ) -> object:
        """The JSON answer at ``target``; a ``GatewayError`` otherwise."""
        service = self.services[service_name]
        request = source_request(target, client)
        if self.isolation is not None:
            await check_venues(self.isolation, request, client)
        budget = max(1, int(budget_ms))
        call = UpstreamCall(
            service, self.pool, budget, False, self.clock_ms, around_attempt=self.around_attempt
        )
        response = await call(request)
        body = await read_body(response, service.label)
        if not 200 <= response.status < 300:
            raise SourceAnswered(f"{service.label} answered {response.status}", response.status)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadGateway(f"{service.label} sent invalid JSON") from None


async def check_venues(isolation: VenueIsolation, request: Request, client: Request) -> None:
    try:
        await isolation.verify(request.path, request.query, client.claims)
    except Forbidden:
        # Not the id: it may come from another service's answer the client never saw.
        raise Forbidden("a venue it names is not available to this tenant") from None


def source_request(target: str, client: Request) -> Request:
    path, _, query = target.partition("?")
    forwarded = [h for h in client.headers if h[0] in FORWARDED_CLIENT_HEADERS]
    request = Request("GET", target.encode("ascii"), forwarded, b"", client.peer_ip)
    request.path, request.query = path, query.encode("ascii")
    request.client_ip, request.request_id = client.client_ip, client.request_id
    request.claims = client.claims  # consistent-hash balancing by user sees the same user
    request.trace = client.trace  # each call a client span of the client's trace
    request.upstream_headers = [*client.upstream_headers, *GATEWAY_HEADERS]
    request.upstream_block = client.upstream_block  # identity and forwarding, as for the client
    return request
