"""A key's own rate limit: its ``--rate-limit``, counted by its id in the shared store, so the
limit holds across workers and gateways. Requests not authenticated by a key pass straight on.

One ``RateLimit`` per distinct rate does the counting, the headers and the 429, exactly as
every other limit: keys of one rate share the instance, each counted under its own id.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from api_gateway.limiter import Rate
from api_gateway.memo import Memo
from api_gateway.policies.ratelimit import RateLimit
from api_gateway.stores import Store
from api_gateway.types import Handler, Request, Response

NAME: Final = "api_key"
MAX_RATES: Final = 256  # distinct rates kept; more are rebuilt (cheaply) as they come


def by_key(request: Request) -> str | None:
    claims = request.claims
    return None if claims is None or not claims.key_id else claims.key_id


class ApiKeyLimit:
    def __init__(self, store: Store, default: tuple[int, int]) -> None:
        self.store, self.default = store, default
        self.limits: Memo[tuple[int, int], RateLimit] = Memo(MAX_RATES)

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        claims = request.claims
        if claims is None or not claims.key_id:
            return call_next(request)
        rate = claims.key_rate or self.default
        limit = self.limits.get(rate) or self._limit(rate)
        return limit(request, call_next)

    def _limit(self, rate: tuple[int, int]) -> RateLimit:
        # Fails open like the user limit: a store outage must not lock every partner out.
        limit = RateLimit(NAME, Rate(rate[0], rate[1], 0), self.store, by_key)
        self.limits.put(rate, limit)
        return limit
