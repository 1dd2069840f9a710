"""The outermost policy: request id, client address, timing, response headers, errors."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Final

from api_gateway.errors import GatewayError, problem_response
from api_gateway.network import TrustedProxies
from api_gateway.observability.access import AccessLog
from api_gateway.observability.metrics import Metrics
from api_gateway.observability.streams import LoggedBody, elapsed_ms
from api_gateway.policies.security_headers import DEFAULT, SecurityHeaders
from api_gateway.types import Handler, Request, Response

log = logging.getLogger("api_gateway")
# A WebSocket's access-log outcome, by why its tunnel ended.
CLOSE_OUTCOMES: Final = {
    "client": "client_closed",
    "upstream": "upstream_closed",
    "idle": "idle_timeout",
    "going_away": "going_away",
}

VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# How much of a client's X-Correlation-ID the access log keeps.
MAX_CLIENT_CORRELATION: Final = 128


class RequestIds:
    """Ids unique per process (a random prefix, drawn again in every forked worker) and across
    its requests (a counter): no syscall per request. 32 characters: 16 hex digits, then the
    counter in decimal, which stays 16 digits wide for the first 9·10^15 requests (formatting a
    decimal is a fraction of the cost of a padded hex format)."""

    def __init__(self) -> None:
        self.prefix = ""
        self.count = 0
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = 10**15

    def new(self) -> str:
        self.count += 1
        return self.prefix + str(self.count)


_IDS: Final = RequestIds()
# Workers are forked from the supervisor after this module is imported: each needs its own.
os.register_at_fork(after_in_child=_IDS.reseed)


def new_request_id() -> str:
    return _IDS.new()


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
        stamper: Stamper | None = None,
    ) -> None:
        self.trusted = trusted if trusted else None
        self.clock = clock
        self.metrics = metrics
        self.access_log = access_log
        self.stamp = stamper or DEFAULT_STAMPER

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        request.request_id = incoming_request_id(request) or new_request_id()
        if self.trusted is not None:
            request.client_ip = self.trusted.client_ip(request)
        try:
            response = await call_next(request)
        except Exception as error:
            response = as_problem(error, request)
        if request.response_headers:
            response.headers += request.response_headers
        duration = self.clock() - request.start
        # Formatted once for both the X-Response-Time header and the access log.
        elapsed = b"%.3f" % (duration * 1000)
        self.stamp(response, request.request_id, elapsed)
        self.metrics.observe(request.route, request.method, response.status, duration)
        if self.access_log is not None:
            if isinstance(response.body, bytes) and response.switched is None:
                self.access_log.record(request, response, elapsed.decode("ascii"))
            else:
                self.log_at_end(request, response)
        return response

    def log_at_end(self, request: Request, response: Response) -> None:
        """A stream's or a tunnel's line is written when it ends, saying how."""
        access_log = self.access_log
        assert access_log is not None

        def done(outcome: str, moved: tuple[int, int] | None = None) -> None:
            access_log.record(request, response, elapsed_ms(request.start), outcome, moved)

        switched = response.switched
        if switched is None:
            assert not isinstance(response.body, bytes)
            response.body = LoggedBody(response.body, done)
            return
        release = switched.on_close

        def closed(sent: int, received: int, reason: str) -> None:
            if release is not None:
                release(sent, received, reason)
            done(CLOSE_OUTCOMES.get(reason, "closed"), (sent, received))

        switched.on_close = closed


def incoming_request_id(request: Request) -> str:
    """The client's own X-Request-Id when it sent exactly one and it is valid, else "".

    Two lines are no id: which one the gateway's logs and the service's logs would each read is
    a guess, and an id that correlates the wrong lines is worse than a fresh one.

    The same pass keeps the client's X-Correlation-ID (its last line, at most
    ``MAX_CLIENT_CORRELATION`` bytes) for the access log: the gateway replaces it everywhere else.
    """
    found: bytes | None = None
    repeated = False
    for name, value in request.headers:
        if name == b"x-request-id":
            repeated = found is not None
            found = value
        elif name == b"x-correlation-id":
            request.client_correlation_id = value[:MAX_CLIENT_CORRELATION].decode("latin-1")
    if found is None or repeated or VALID_REQUEST_ID.fullmatch(found) is None:
        return ""
    return found.decode("ascii")


def as_problem(error: Exception, request: Request) -> Response:
    if not isinstance(error, GatewayError):
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = GatewayError()
    return problem_response(error, request.request_id, request.path)


class Stamper:
    """What every response carries: the security headers, its request id (as X-Request-ID and as
    X-Correlation-ID, the original gateway's name for it) and its timing.

    The id and timing follow every listed header; when the response sets none of the security
    headers (nearly always) they all go out as one pre-rendered block, in the same order.
    """

    def __init__(self, security: SecurityHeaders) -> None:
        self.security = security
        self.names, self.rendered = security.names, security.rendered

    def __call__(self, response: Response, request_id: str, elapsed_ms: bytes) -> None:
        names = self.names
        for name, _ in response.headers:
            if name in names:
                break
        else:
            encoded = request_id.encode("ascii")  # once, for both of its headers
            response.rendered = b"".join(
                (
                    b"x-request-id: ",
                    encoded,
                    b"\r\nx-correlation-id: ",
                    encoded,
                    b"\r\nx-response-time: ",
                    elapsed_ms,
                    b"ms\r\n",
                    response.rendered,
                    self.rendered,
                )
            )
            return
        self.security.add(response)
        encoded = request_id.encode("ascii")
        response.headers += (
            (b"x-request-id", encoded),
            (b"x-correlation-id", encoded),
            (b"x-response-time", elapsed_ms + b"ms"),
        )

    def stamp(self, response: Response, request_id: str, duration_s: float) -> None:
        self(response, request_id, b"%.3f" % (duration_s * 1000))


DEFAULT_STAMPER: Final = Stamper(DEFAULT)
