"""Rate limiting: a limit, a key, a store. Answers 429 with Retry-After; fails open when the
store is unreachable, because a limiter outage must not become a platform outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from api_gateway.errors import RateLimited
from api_gateway.limiter import Decision, Rate
from api_gateway.stores import Store, StoreUnavailable
from api_gateway.types import Handler, Request, Response

log = logging.getLogger("api_gateway.ratelimit")
WARN_EVERY_S = 10.0
HEADER_TABLE = 4096
KEY_CACHE_SIZE = 4096

KeyFunction = Callable[[Request], str]


def by_client_ip(request: Request) -> str:
    return "ip:" + request.client_ip


def by_user_or_ip(request: Request) -> str:
    claims = request.claims
    return "user:" + claims.user_id if claims is not None else "ip:" + request.client_ip


class RateLimit:
    def __init__(self, name: str, rate: Rate, store: Store, key: KeyFunction) -> None:
        self.name, self.rate, self.store, self.key = name, rate, store, key
        self.prefix = name + ":"
        self.ip_prefix = self.prefix + "ip:"
        self.ip_keys: dict[str, str] = {}
        self.limit_header = (b"x-ratelimit-limit", str(rate.max).encode())
        self.last_warning = 0.0
        # Header values seen on every response, rendered at start-up rather than per request.
        self.remaining_headers = [
            (b"x-ratelimit-remaining", b"%d" % n) for n in range(min(rate.max, HEADER_TABLE))
        ]
        window_s = -(-rate.window_ms // 1000)
        self.reset_headers = [
            (b"x-ratelimit-reset", b"%d" % n) for n in range(min(window_s, HEADER_TABLE) + 1)
        ]
        # A store that can decide without I/O is called directly, saving a coroutine.
        self.decide: Callable[[str, Rate], Decision] | None = getattr(store, "decide", None)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        decide = self.decide
        if decide is None:
            return self._ask_store(request, call_next)
        # The per-IP key is built in place: one call less for the limit every request passes.
        if self.key is by_client_ip:
            # One key object per address: its hash is computed once, not for every hit.
            key = self.ip_keys.get(request.client_ip) or self.ip_key(request.client_ip)
        else:
            key = self.prefix + self.key(request)
        try:
            decision = decide(key, self.rate)
        except StoreUnavailable as exc:
            self._warn(exc)
            return call_next(request)
        if not decision.allowed:
            self._apply(decision, request)
        remaining, reset_s = decision.remaining, -(-decision.reset_ms // 1000)
        request.response_headers += (
            self.limit_header,
            self.remaining_headers[remaining]
            if remaining < len(self.remaining_headers)
            else (b"x-ratelimit-remaining", b"%d" % remaining),
            self.reset_headers[reset_s]
            if reset_s < len(self.reset_headers)
            else (b"x-ratelimit-reset", b"%d" % reset_s),
        )
        return call_next(request)

    def ip_key(self, client_ip: str) -> str:
        if len(self.ip_keys) >= KEY_CACHE_SIZE:
            self.ip_keys.clear()
        key = self.ip_keys[client_ip] = self.ip_prefix + client_ip
        return key

    async def _ask_store(self, request: Request, call_next: Handler) -> Response:
        try:
            decision = await self.store.hit(self.prefix + self.key(request), self.rate)
        except StoreUnavailable as exc:
            self._warn(exc)
            return await call_next(request)
        self._apply(decision, request)
        return await call_next(request)

    def _apply(self, decision: Decision, request: Request) -> None:
        """429 when denied; otherwise the limit headers go on the response."""
        reset_s = self.seconds(decision.reset_ms)
        if not decision.allowed:
            raise RateLimited(
                f"the {self.name} limit of {self.rate.max} requests per "
                f"{self.rate.window_ms // 1000} s is exceeded",
                -(-decision.retry_after_ms // 1000),
                [self.limit_header, (b"x-ratelimit-remaining", b"0"), reset_s],
            )
        remaining = decision.remaining
        request.response_headers += (
            self.limit_header,
            self.remaining_headers[remaining]
            if remaining < len(self.remaining_headers)
            else (b"x-ratelimit-remaining", b"%d" % remaining),
            reset_s,
        )

    def seconds(self, ms: int) -> tuple[bytes, bytes]:
        """The reset header for ``ms``, in whole seconds rounded up (rendered once each)."""
        seconds = -(-ms // 1000)
        if seconds < len(self.reset_headers):
            return self.reset_headers[seconds]
        return (b"x-ratelimit-reset", b"%d" % seconds)

    def _warn(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self.last_warning > WARN_EVERY_S:
            self.last_warning = now
            log.warning("rate limit store unavailable, allowing requests: %s", exc)
