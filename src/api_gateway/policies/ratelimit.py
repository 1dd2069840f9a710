"""Rate limiting: a limit, a key, a store. Answers 429 with Retry-After.

Allowed and refused answers carry the limit in both header families clients use
(``RateLimit-Limit/-Remaining/-Reset`` and ``X-RateLimit-*``); when several limits apply, the
one with the fewest requests left is the one reported, and a 429 reports only the limit that
refused it (with its ``Retry-After``). Keys come from ``limit_keys`` (or, for the per-address
and per-user limits, the functions below). While the gateway is overloaded, limits
tighten by the configured factor. When the store cannot answer, a route that fails closed
answers 503; every other route is decided by the in-memory stand-in (``FallbackStore``) or,
failing that, let through, because a limiter outage must not become a platform outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from api_gateway.errors import RateLimited, ServiceUnavailable
from api_gateway.limiter import Decision, Rate
from api_gateway.memo import Memo
from api_gateway.network import ADDRESS_CACHE_SIZE, AddressKeys
from api_gateway.overload import OverloadMonitor
from api_gateway.stores import Store, StoreUnavailable
from api_gateway.stores.memory import MemoryStore
from api_gateway.types import Handler, Headers, Request, Response

log = logging.getLogger("api_gateway.ratelimit")
WARN_EVERY_S: Final = 10.0
HEADER_TABLE: Final = 4096
KEY_CACHE_SIZE: Final = ADDRESS_CACHE_SIZE
# ``Request.limit_at`` below zero: no limit reported yet, or why the request was stopped.
REFUSED: Final = -2
UNAVAILABLE: Final = -3

KeyFunction = Callable[[Request], str | None]
Pair = tuple[tuple[bytes, bytes], tuple[bytes, bytes]]


# The client address is keyed by ``RateLimit`` itself (``AddressKeys``: IPv6 by its prefix):
# these two functions name the kind of key; called directly, they give the unmasked address.
def by_client_ip(request: Request) -> str:
    return "ip:" + request.client_ip


def by_user_or_ip(request: Request) -> str:
    claims = request.claims
    return "user:" + claims.user_id if claims is not None else "ip:" + request.client_ip


def by_user(request: Request) -> str | None:
    """Authenticated traffic only: an anonymous request is not counted by this limit."""
    claims = request.claims
    # An API key has its own limit (apikeys.limit), which takes this one's place.
    return None if claims is None or claims.key_id else "user:" + claims.user_id


def by_identity(request: Request) -> str | None:
    """A route's ``key: user``: any authenticated identity, an API key's (``key:<id>``)
    included; an anonymous request is not counted. The same key as ``by_user_or_ip`` for a
    signed-in user, so a limit that moves from one to the other keeps its buckets."""
    claims = request.claims
    return None if claims is None else "user:" + claims.user_id


def _pair(field: bytes, value: int) -> Pair:
    value_bytes = str(value).encode()
    return (b"x-ratelimit-" + field, value_bytes), (b"ratelimit-" + field, value_bytes)


class LimitHeaders:
    """The headers of one rate, rendered at start-up for the values every response uses."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.limit = _pair(b"limit", rate.max)
        # The limit's pair and each remaining count's pair as one tuple: one concatenation less.
        self.limit_and_remaining = [
            self.limit + _pair(b"remaining", n) for n in range(min(rate.max, HEADER_TABLE))
        ]
        window_s = -(-rate.window_ms // 1000)
        self.reset = [_pair(b"reset", n) for n in range(min(window_s, HEADER_TABLE) + 1)]

    def of(self, decision: Decision) -> Headers:
        # Built item by item: compiled, the pairs are fixed-length tuples read in place, where
        # unpacking them with * would iterate over them as generic objects.
        remaining, reset_s = decision.remaining, -(-decision.reset_ms // 1000)
        resets = self.reset
        reset = resets[reset_s] if reset_s < len(resets) else _pair(b"reset", reset_s)
        table = self.limit_and_remaining
        if remaining < len(table):
            first = table[remaining]
            return [first[0], first[1], first[2], first[3], reset[0], reset[1]]
        limit, count = self.limit, _pair(b"remaining", remaining)
        return [limit[0], limit[1], count[0], count[1], reset[0], reset[1]]


class RateLimit:
    def __init__(
        self,
        name: str,
        rate: Rate,
        store: Store,
        key: KeyFunction,
        overload: OverloadMonitor | None = None,
        tighten_factor: float = 1.0,
        fail_closed: bool = False,
        addresses: AddressKeys | None = None,
    ) -> None:
        self.name, self.store, self.key = name, store, key
        self.addresses = addresses or AddressKeys()
        self.prefix = name + ":"
        self.ip_prefix = self.prefix + "ip:"
        self.ip_keys: Memo[str, str] = Memo(KEY_CACHE_SIZE)
        self.headers = LimitHeaders(rate)
        tight = Rate(max(1, int(rate.max * tighten_factor)), rate.window_ms, rate.block_ms)
        self.tight_headers = LimitHeaders(tight)
        self.overload = overload if overload is not None and tight != rate else None
        self.fail_closed = fail_closed
        self.last_warning = 0.0
        # A store that decides without I/O is called directly: no coroutine, and, compiled, a
        # native call.
        self.memory = store if isinstance(store, MemoryStore) else None
        # Decisions, read by the metrics exporter: allowed, refused (429), unavailable (503 of a
        # route that fails closed), unchecked (let through because the store could not answer).
        self.allowed = self.refused = self.unavailable = self.unchecked = 0

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        key_of = self.key
        if key_of is by_client_ip or (key_of is by_user_or_ip and request.claims is None):
            # The limit every request passes: its key made in place, one call less. An IPv4
            # address (no colon: the client address is canonical) is its own identity, so its
            # key is one concatenation, cheaper than a memo that 100,000 addresses would keep
            # missing; an IPv6 address is keyed by its prefix, worked out once and remembered.
            client_ip = request.client_ip
            if ":" not in client_ip:
                key = self.ip_prefix + client_ip
            else:
                key = self.ip_keys.get(client_ip) or self.ip_key(client_ip)
        else:
            user_key = self.key(request)
            if user_key is None:
                return call_next(request)
            key = self.prefix + user_key
        headers = self.headers
        if self.overload is not None and self.overload.overloaded:
            headers = self.tight_headers
        memory = self.memory
        if memory is None:
            return self._ask_store(request, call_next, key, headers)
        self._apply(memory.decide(key, headers.rate), request, headers)
        return call_next(request)

    def ip_key(self, client_ip: str) -> str:
        # Bounded, the keys in use kept: a flood of new addresses must not make every regular
        # client's key be worked out again.
        key = self.ip_prefix + self.addresses(client_ip)
        self.ip_keys.put(client_ip, key)
        return key

    async def _ask_store(
        self, request: Request, call_next: Handler, key: str, headers: LimitHeaders
    ) -> Response:
        try:
            decision = await self.store.hit(key, headers.rate, self.fail_closed)
        except StoreUnavailable as exc:
            if self.fail_closed:
                self.unavailable += 1
                request.limit_at = UNAVAILABLE
                raise ServiceUnavailable(
                    "rate limits cannot be checked right now; try again shortly",
                    [(b"retry-after", b"1")],
                ) from None
            self.unchecked += 1
            self._warn(exc)
            return await call_next(request)
        self._apply(decision, request, headers)
        return await call_next(request)

    def _apply(self, decision: Decision, request: Request, headers: LimitHeaders) -> None:
        """429 when refused; otherwise the limit's headers, if it is the tightest so far."""
        if not decision.allowed:
            self.refused += 1
            at = request.limit_at
            if at >= 0:
                # The 429 reports the limit that refused, alone: an earlier limit's headers
                # (requests left) would contradict its Retry-After.
                del request.response_headers[at : at + 6]
            request.limit_at = REFUSED
            rate = headers.rate
            raise RateLimited(
                f"the {self.name} limit of {rate.max} requests per "
                f"{rate.window_ms // 1000} s is exceeded",
                -(-decision.retry_after_ms // 1000),
                headers.of(decision),
                limit=rate.max,
                remaining=decision.remaining,
                reset_s=-(-decision.reset_ms // 1000),
            )
        self.allowed += 1
        at = request.limit_at
        if at < 0:
            request.limit_at = len(request.response_headers)
            request.limit_remaining = decision.remaining
            request.response_headers += headers.of(decision)
        elif decision.remaining < request.limit_remaining:
            request.limit_remaining = decision.remaining
            request.response_headers[at : at + 6] = headers.of(decision)

    def _warn(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self.last_warning > WARN_EVERY_S:
            self.last_warning = now
            log.warning("rate limit store unavailable, allowing requests: %s", exc)
