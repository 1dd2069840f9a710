"""The outermost policy: request id, client address, timing, response headers, errors."""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable

from api_gateway.errors import GatewayError, problem_response
from api_gateway.network import TrustedProxies
from api_gateway.observability.access import AccessLog
from api_gateway.observability.metrics import Metrics
from api_gateway.policies.security_headers import add_security_headers
from api_gateway.types import Handler, Headers, Request, Response

log = logging.getLogger("api_gateway")

VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique per process (a random prefix) and across requests (a counter): no syscall."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def response_time(start: float, now: float) -> bytes:
    return b"%.3fms" % ((now - start) * 1000)


class RequestContext:
    """Gives every request an id and a client address, and every response its id, timing,
    security headers and the headers policies asked for (CORS, rate limit).

    Errors raised anywhere below become problem documents here, so nothing escapes to the
    data plane, and an error response carries the same headers as any other.
    """

    def __init__(
        self,
        trusted: TrustedProxies,
        clock: Callable[[], float],
        metrics: Metrics,
        access_log: AccessLog | None,
    ) -> None:
        self.trusted = trusted
        self.clock = clock
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        incoming = request.header(b"x-request-id")
        if incoming is not None and VALID_REQUEST_ID.fullmatch(incoming):
            request.request_id = incoming.decode("ascii")
        else:
            request.request_id = new_request_id()
        if self.trusted:
            request.client_ip = self.trusted.client_ip(request)
        try:
            response = await call_next(request)
        except Exception as error:
            response = as_problem(error, request)
        if request.response_headers:
            response.headers += request.response_headers
        add_security_headers(response)
        now = self.clock()
        stamp(response.headers, request.request_id, request.start, now)
        duration = now - request.start
        self.metrics.observe(request.route, request.method, response.status, duration)
        if self.access_log is not None:
            self.access_log.record(request, response, duration)
        return response


def as_problem(error: Exception, request: Request) -> Response:
    if not isinstance(error, GatewayError):
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = GatewayError()
    return problem_response(error, request.request_id, request.path)


def stamp(headers: Headers, request_id: str, start: float, now: float) -> None:
    headers.append((b"x-request-id", request_id.encode("ascii")))
    headers.append((b"x-response-time", response_time(start, now)))
