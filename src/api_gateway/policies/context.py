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
from api_gateway.observability.metrics import Exchanges, Metrics
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
        reason = ""
        try:
            response = await call_next(request)
        except Exception as error:
            response = as_problem(error, request)
            reason = error.reason if isinstance(error, GatewayError) else GatewayError.reason
        if request.response_headers:
            response.headers.extend(request.response_headers)
        duration = self.clock() - request.start
        # Formatted once for both the X-Response-Time header and the access log.
        elapsed = b"%.3f" % (duration * 1000)
        self.stamp(response, request.request_id, elapsed)
        body, answer = request.body, response.body
        received = len(body) if isinstance(body, bytes) else streamed_bytes(body)
        whole = isinstance(answer, bytes) and response.switched is None
        sent = len(answer) if isinstance(answer, bytes) and request.method != "HEAD" else 0
        entry = self.metrics.observe(
            request.route, request.method, response.status, duration, received, sent
        )
        if not whole:
            self.count_at_end(request, response, entry, received, reason)
        elif self.access_log is not None:
            self.access_log.record(
                request, response, elapsed.decode("ascii"), "", received, sent, reason
            )
        return response

    def count_at_end(
        self, request: Request, response: Response, entry: Exchanges, received: int, reason: str
    ) -> None:
        """A stream's bytes are counted, and its or a tunnel's line written, when it ends."""
        access_log = self.access_log
        switched = response.switched
        if switched is None:
            assert not isinstance(response.body, bytes)

            def ended(outcome: str, sent: int) -> None:
                entry.sent += sent
                if access_log is not None:
                    duration = elapsed_ms(request.start)
                    access_log.record(request, response, duration, outcome, received, sent, reason)

            response.body = LoggedBody(response.body, ended)
            return
        if access_log is None:
            return
        release = switched.on_close

        def closed(from_client: int, from_upstream: int, why: str) -> None:
            if release is not None:
                release(from_client, from_upstream, why)
            duration, outcome = elapsed_ms(request.start), CLOSE_OUTCOMES.get(why, "closed")
            access_log.record(request, response, duration, outcome, from_client, from_upstream)

        switched.on_close = closed


def streamed_bytes(body: object) -> int:
    """What arrived of a body that streamed in (``BodyStream.received``)."""
    received = getattr(body, "received", 0)
    return received if isinstance(received, int) else 0


def incoming_request_id(request: Request) -> str:
    """The client's own X-Request-Id when it sent exactly one and it is valid, else "".

    Two lines are no id: which one the gateway's logs and the service's logs would each read is
    a guess, and an id that correlates the wrong lines is worse than a fresh one.

    The same pass keeps the client's X-Correlation-ID (its last line, at most
    ``MAX_CLIENT_CORRELATION`` bytes) for the access log: the gateway replaces it everywhere else;
    and its User-Agent (the last line), for the access log too.
    """
    found: bytes | None = None
    repeated = False
    for name, value in request.headers:
        if name == b"x-request-id":
            repeated = found is not None
            found = value
        elif name == b"x-correlation-id":
            request.client_correlation_id = value[:MAX_CLIENT_CORRELATION].decode("latin-1")
        elif name == b"user-agent":
            request.user_agent = value
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
