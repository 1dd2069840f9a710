"""Per-route limits decided before the body is read: method and body size."""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import MethodNotAllowed, PayloadTooLarge
from api_gateway.http.body import CountedBody
from api_gateway.types import Handler, Request, Response


class RequestLimits:
    """The method must be allowed on the route, and the body within its limit: 413 from the
    declared length before a byte is read, chunked bodies counted as they pass."""

    def __init__(self, methods: frozenset[str], max_bytes: int) -> None:
        self.methods = methods
        self.allow = ", ".join(sorted(methods)).encode()
        self.max_bytes = max_bytes

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
        elif declared is None:
            request.body = CountedBody(body, self.max_bytes)
        return call_next(request)
