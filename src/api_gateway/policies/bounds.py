"""Per-route bounds decided before the body is read: method, body size, and how many bodies one
client may have arriving at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from api_gateway.errors import MethodNotAllowed, PayloadTooLarge, RateLimited
from api_gateway.http.body import BodyStream, CountedBody
from api_gateway.types import Handler, Request, Response


class BodyGate:
    """Request bodies still arriving, counted per client (the key the rate limits use, so a
    client behind a trusted proxy is itself, not the proxy). Past ``max_per_client`` a new one
    is refused with 429 before a byte of it is read: slow bodies cost a connection, a task and
    an upstream connection each, and one address must not hold thousands of them.

    Only bodies that did not arrive with their head count (the rare, large or slow ones); one
    leaves the count when it has arrived whole, failed or been given up.
    """

    def __init__(self, max_per_client: int, key: Callable[[str], str]) -> None:
        self.max_per_client = max_per_client
        self.key = key
        self.arriving: dict[str, int] = {}

    def admit(self, request: Request, body: BodyStream) -> None:
        key = self.key(request.client_ip)
        count = self.arriving.get(key, 0)
        if count >= self.max_per_client:
            raise RateLimited(
                f"more than {self.max_per_client} request bodies arriving at once",
                1,
                limit=self.max_per_client,
            )
        self.arriving[key] = count + 1
        body.when_done(lambda: self._leave(key))

    def _leave(self, key: str) -> None:
        count = self.arriving.pop(key, 0) - 1
        if count > 0:
            self.arriving[key] = count


class RequestBounds:
    """The method must be allowed on the route, and the body within its limit: 413 from the
    declared length before a byte is read, chunked bodies counted as they pass."""

    def __init__(
        self, methods: frozenset[str], max_bytes: int, bodies: BodyGate | None = None
    ) -> None:
        self.methods = methods
        self.allow = ", ".join(sorted(methods)).encode()
        self.max_bytes = max_bytes
        self.bodies = bodies

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.method not in self.methods:
            raise MethodNotAllowed(
                f"{request.method} is not allowed here", [(b"allow", self.allow)]
            )
        body = request.body
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            raise PayloadTooLarge(f"the body exceeds {self.max_bytes} bytes")
        if isinstance(body, bytes):
            if len(body) > self.max_bytes:
                raise PayloadTooLarge(f"the body exceeds {self.max_bytes} bytes")
            return call_next(request)
        if self.bodies is not None and isinstance(body, BodyStream) and not body.complete:
            self.bodies.admit(request, body)
        if declared is None:
            request.body = CountedBody(body, self.max_bytes)
        return call_next(request)
