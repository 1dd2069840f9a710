"""Clients for the calls the gateway makes on its own behalf (readiness, aggregation).

They go through the same upstream path as proxied traffic (the service's breaker, balancer,
outlier detection and retries), with a 5 s deadline and ``x-gateway-internal: true``. The
service paths follow the platform's conventions; a service that moves them changes them here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import quote

import orjson

from api_gateway.errors import BadGateway, GatewayError, UpstreamTimeout
from api_gateway.http.body import read_whole
from api_gateway.timers import PatientTimeout
from api_gateway.types import Headers, Pool, Request, Response
from api_gateway.upstream.call import UpstreamCall
from api_gateway.upstream.service import UpstreamService

CLIENT_TIMEOUT_MS: Final = 5_000
MAX_DOCUMENT_BYTES: Final = 4 * 1024 * 1024
# The deadline is the waiting request's: a pause of the loop gives it one more bound, no more.
PAUSE_EXTENSIONS: Final = 1
GATEWAY_HEADERS: Headers = [
    (b"x-gateway-internal", b"true"),
    (b"accept", b"application/json"),
    (b"user-agent", b"api-gateway"),
]
Document = dict[str, object]
Header = tuple[bytes, bytes]


class ServiceClient:
    def __init__(
        self,
        service: UpstreamService,
        pool: Pool,
        clock_ms: Callable[[], float],
        timeout_ms: int = CLIENT_TIMEOUT_MS,
    ) -> None:
        self.label = service.label
        self.clock_ms, self.timeout_ms = clock_ms, timeout_ms
        self.call = UpstreamCall(service, pool, timeout_ms, False, clock_ms)

    async def get(self, path: str, headers: Sequence[Header] = ()) -> tuple[int, bytes]:
        """GET ``path`` on the service: its status and body (at most 4 MiB)."""
        request = Request("GET", path.encode("ascii"), list(headers), b"", "127.0.0.1")
        request.path = path
        request.upstream_headers = GATEWAY_HEADERS
        expires = self.clock_ms() + self.timeout_ms
        response = await self.call(request)
        # The call's deadline covers the head; a body streams under a timeout per read, which a
        # service dripping it never meets. Requests wait on these answers: bound the whole.
        body = response.body
        if isinstance(body, bytes):
            return response.status, body
        try:
            remaining_s = max(expires - self.clock_ms(), 0) / 1000
            async with PatientTimeout(remaining_s, max_extensions=PAUSE_EXTENSIONS):
                return response.status, await read_body(response, self.label)
        except TimeoutError:
            body.abort()
            raise UpstreamTimeout(f"{self.label} did not send {path} in time") from None

    async def get_document(self, path: str, headers: Sequence[Header] = ()) -> Document | None:
        """The JSON object at ``path``; None when the service says 404."""
        status, body = await self.get(path, headers)
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise BadGateway(f"{self.label} answered {status} for {path}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadGateway(f"{self.label} sent invalid JSON for {path}") from exc
        if not isinstance(document, dict):
            raise BadGateway(f"{self.label} sent a non-object for {path}")
        return document

    async def health_check(self) -> str | None:
        """None when the service is healthy, else why not."""
        try:
            status, _ = await self.get("/health")
        except GatewayError as error:
            return error.detail
        return None if status < 500 else f"answered {status}"


class AuthServiceClient(ServiceClient):
    async def get_user_by_id(self, user_id: str) -> Document | None:
        return await self.get_document(f"/api/v1/users/{quote(user_id, safe='')}")

    async def validate_token(self, token: str) -> Document | None:
        """The auth service's view of a token (None: it does not know or accept it)."""
        header = (b"authorization", b"Bearer " + token.encode("ascii", "replace"))
        return await self.get_document("/api/v1/auth/verify", [header])


# venue-service's public custom-domain route (branding.routes.ts): 200 {venue: {id, tenant_id,
# ...}, branding}, 404 when no venue has the domain.
DOMAIN_LOOKUP: Final = "/api/v1/branding/domain/"


class VenueServiceClient(ServiceClient):
    async def get_venue(self, venue_id: str) -> Document | None:
        return await self.get_document(f"/api/v1/venues/{quote(venue_id, safe='')}")

    async def check_access(self, venue_id: str, user_id: str) -> bool:
        path = f"/api/v1/venues/{quote(venue_id, safe='')}/access/{quote(user_id, safe='')}"
        status, _ = await self.get(path)
        return 200 <= status < 300

    async def resolve_domain(self, host: str) -> Document | None:
        """The venue whose custom domain ``host`` is (canonical, e.g. ``tickets.venue.com``):
        ``{"venueId": ..., "tenantId": ...}``; None when no venue has it."""
        return await self.get_document(f"{DOMAIN_LOOKUP}{quote(host, safe='')}")


async def read_body(response: Response, label: str) -> bytes:
    body = await read_whole(response.body, MAX_DOCUMENT_BYTES)
    if body is None:
        raise BadGateway(f"{label} sent more than {MAX_DOCUMENT_BYTES} bytes")
    return body
