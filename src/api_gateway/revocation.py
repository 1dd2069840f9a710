"""Revoked access tokens: the ones auth-service has logged out, as it writes them to Redis.

auth-service's logout keeps a revoked token as ``blacklist:<token>`` (``SETEX``, value
``revoked``, for the rest of the token's life), and the original gateway looked for
``session:blacklist:<token>``: a token is revoked while either key exists, whatever its value.

A verified token's answer is kept on its cached ``Claims`` (``checked_until``, or
``revoked_until``) for ``jwt.revocation_check_ms``, so Redis is asked at most once per token per
period, whatever the traffic; concurrent checks of one token share one question. Both keys are
asked at once: on one server, two GETs queued on its open connection and awaited as they are (no
task: with many users most requests bring a token not checked yet, so this is paid per request);
in a cluster, or before the connection is open, each on its key's node, gathered. When
Redis cannot answer, a route that fails closed answers 503; any other lets the request through
and says so in the log (at most every ``WARN_EVERY_S``).

Only with ``REDIS_URL``: auth-service writes to Redis, never to the gateway's own stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from api_gateway.errors import ServiceUnavailable, TokenRevoked
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import Reply, RespError, encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Claims

if TYPE_CHECKING:
    from api_gateway.config.settings import GatewayConfig
    from api_gateway.stores import Store

log = logging.getLogger("api_gateway.revocation")
# auth-service's key, then the original gateway's.
REVOKED_PREFIXES: Final[tuple[str, ...]] = ("blacklist:", "session:blacklist:")
WARN_EVERY_S: Final = 10.0


class Commands(Protocol):
    """One Redis server or a cluster: both route a single-key command to the key's node."""

    async def command(self, *args: str | bytes | int) -> Reply: ...


class Revocations:
    """Whether auth-service revoked a verified token; ``clock`` is the verifier's (seconds)."""

    def __init__(self, redis: Commands, period_s: float, clock: Callable[[], float]) -> None:
        self.redis, self.period_s, self.clock = redis, period_s, clock
        # Questions in flight, by token: at most one each.
        self.flights: dict[str, asyncio.Future[list[Reply]]] = {}
        self.last_warning = -WARN_EVERY_S
        # Read by tests and the log: requests let through because Redis could not answer.
        self.unchecked = 0

    async def check(self, claims: Claims, token: str, fail_closed: bool) -> None:
        """Returns when ``token`` (whose ``claims`` these are) may be used; raises
        ``TokenRevoked`` when auth-service revoked it, ``ServiceUnavailable`` when Redis cannot
        say and the route fails closed."""
        now = self.clock()
        if claims.revoked_until >= now:
            raise TokenRevoked()
        if claims.checked_until >= now:
            return
        flight = self.flights.get(token)
        if flight is None:
            flight = self.flights[token] = self._ask(token)
            flight.add_done_callback(functools.partial(self._landed, token))
        try:
            revoked = revoked_by(await asyncio.shield(flight))
        except StoreUnavailable as exc:
            if fail_closed:
                raise ServiceUnavailable(
                    "revoked tokens cannot be checked right now; try again shortly",
                    [(b"retry-after", b"1")],
                ) from None
            self.unchecked += 1
            self._warn(exc)
            return
        until = self.clock() + self.period_s
        if revoked:
            claims.revoked_until = until
            raise TokenRevoked()
        claims.checked_until = until

    def _ask(self, token: str) -> asyncio.Future[list[Reply]]:
        """Both keys' replies, in REVOKED_PREFIXES order."""
        redis = self.redis
        if isinstance(redis, RedisClient):
            conn = redis.conn
            if conn is not None and conn.error is None:
                with contextlib.suppress(StoreUnavailable):  # closed meanwhile: the long way
                    keys = [prefix + token for prefix in REVOKED_PREFIXES]
                    sent = [conn.send(encode_command("GET", key)) for key in keys]
                    return asyncio.gather(*sent)
        return asyncio.ensure_future(self._gathered(token))

    async def _gathered(self, token: str) -> list[Reply]:
        return await asyncio.gather(
            *[self.redis.command("GET", prefix + token) for prefix in REVOKED_PREFIXES]
        )

    def _landed(self, token: str, flight: asyncio.Future[list[Reply]]) -> None:
        """The question is answered (or failed): the next check after the period asks again,
        and a failure nobody waited for is still marked seen."""
        del self.flights[token]
        _retrieve(flight)

    def _warn(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self.last_warning > WARN_EVERY_S:
            self.last_warning = now
            log.warning("revoked tokens cannot be checked, allowing requests: %s", exc)


def revoked_by(replies: list[Reply]) -> bool:
    """Revoked while either key exists, whatever its value; an error reply is Redis failing."""
    for reply in replies:
        if isinstance(reply, RespError):
            raise StoreUnavailable(f"redis refused a revocation check: {reply.message}")
    return any(reply is not None for reply in replies)


def _retrieve(flight: asyncio.Future[Any]) -> None:
    """Mark a failed question's error as seen even when every waiter was cancelled."""
    if not flight.cancelled():
        flight.exception()


def open_revocations(
    config: GatewayConfig, store: Store, clock: Callable[[], float]
) -> Revocations | None:
    """The check, on the client the rate-limit store holds; None without ``REDIS_URL`` or
    with ``jwt.revocation_check_ms: 0``."""
    period_ms = config.jwt.revocation_check_ms
    if config.redis_url is None or not period_ms:
        return None
    from api_gateway.resp.cluster import ClusterClient
    from api_gateway.stores.fallback import FallbackStore

    shared = store.primary if isinstance(store, FallbackStore) else store
    assert isinstance(shared, RedisClient | ClusterClient)
    return Revocations(shared, period_ms / 1000, clock)
