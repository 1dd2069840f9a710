"""Revoked access tokens: the ones auth-service has logged out, as it writes them to Redis.

auth-service's logout keeps a revoked token as ``blacklist:<token>`` (``SETEX``, value
``revoked``, for the rest of the token's life), and the original gateway looked for
``session:blacklist:<token>``: a token is revoked while either key exists, whatever its value.

A verified token's answer is kept on its cached ``Claims`` (``checked_until``, or
``revoked_until``) for ``jwt.revocation_check_ms``, so Redis is asked at most once per token per
period, whatever the traffic; concurrent checks of one token share one question. On one server
the question is one ``EXISTS`` of both keys (a count of the keys that exist), queued on the open
connection and awaited as the reply itself: no task, no gather (with many users most requests
bring a token not checked yet, so this is paid per request). In a cluster the two keys may live
on different nodes (one command would be refused with ``CROSSSLOT``): one ``EXISTS`` each, on
its key's node, gathered. When Redis cannot answer, a route that fails closed answers 503; any
other lets the request through and says so in the log (at most every ``WARN_EVERY_S``).

The first check of a token awaits the reply itself and passes it on to the checks that joined
meanwhile, each awaiting a future of its own. A cancelled first check (its client went away)
cancels the reply it awaited: the checks still waiting then ask again, so one request's
cancellation never fails another's check.

Only with ``REDIS_URL``: auth-service writes to Redis, never to the gateway's own stores.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from api_gateway.errors import ServiceUnavailable, TokenRevoked
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import Reply, RespError
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Claims

if TYPE_CHECKING:
    from api_gateway.config.settings import GatewayConfig
    from api_gateway.stores import Store

log = logging.getLogger("api_gateway.revocation")
# auth-service's key, then the original gateway's.
REVOKED_PREFIXES: Final[tuple[str, ...]] = ("blacklist:", "session:blacklist:")
WARN_EVERY_S: Final = 10.0
# Each key's length over the token's (``blacklist:``, ``session:blacklist:``), for EXISTS.
AUTH_SERVICE_KEY_EXTRA: Final = 10
GATEWAY_KEY_EXTRA: Final = 18


class Commands(Protocol):
    """One Redis server or a cluster: both route a single-key command to the key's node."""

    async def command(self, *args: str | bytes | int) -> Reply: ...


class Revocations:
    """Whether auth-service revoked a verified token; ``clock`` is the verifier's (seconds).

    ``per_key``: the keys may live on different servers (a cluster), so each is asked alone.
    """

    def __init__(
        self,
        redis: Commands,
        period_s: float,
        clock: Callable[[], float],
        per_key: bool = False,
    ) -> None:
        self.redis, self.period_s, self.clock = redis, period_s, clock
        self.per_key = per_key
        # Questions in flight, by token (at most one each): the checks that joined one, each
        # waiting on a future of its own (the first check awaits the reply itself).
        self.flights: dict[str, list[asyncio.Future[Reply]]] = {}
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
        flights = self.flights
        joined = flights.get(token)
        try:
            if joined is not None:
                reply = await self._join(joined)
            else:
                asked = self._ask(token)
                flights[token] = []
                try:
                    reply = await asked
                finally:  # answered, failed or cancelled: the checks that joined are told
                    self._settle(token, asked)
            revoked = revoked_by(reply)
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

    @staticmethod
    def _join(joined: list[asyncio.Future[Reply]]) -> asyncio.Future[Reply]:
        """A place in a question already asked: a future of this check's own, so that its
        cancellation touches nobody else."""
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        joined.append(waiter)
        return waiter

    def _ask(self, token: str) -> asyncio.Future[Reply]:
        """The count of the token's keys that exist (or an error reply), as a future."""
        redis = self.redis
        if not self.per_key and isinstance(redis, RedisClient):
            conn = redis.conn
            if conn is not None and conn.error is None:
                # try, not contextlib.suppress: COMPILED.md §12.
                try:
                    return conn.send(exists_both(token))
                except StoreUnavailable:  # closed meanwhile: the long way
                    pass
        return asyncio.ensure_future(self._counted(token))

    async def _counted(self, token: str) -> Reply:
        """The long way: the connection opened first, or each key on its own node."""
        keys = [prefix + token for prefix in REVOKED_PREFIXES]
        if not self.per_key:
            return await self.redis.command("EXISTS", *keys)
        total = 0
        for count in await asyncio.gather(*[self.redis.command("EXISTS", k) for k in keys]):
            if type(count) is not int:
                return count  # an error reply (or garbage): read as Redis failing
            total += count
        return total

    def _settle(self, token: str, asked: asyncio.Future[Reply]) -> None:
        """The question is answered (or failed): the checks that joined it get the same outcome,
        and the next check after the period asks again. A question cancelled with the check
        that awaited it is asked again for the checks still waiting; one its check left
        unanswered (the check was closed, not cancelled) settles when it lands."""
        waiting = [waiter for waiter in self.flights.pop(token) if not waiter.done()]
        try:  # one call for the usual case (answered), where done() and cancelled() are two
            failure = asked.exception()  # retrieved even when nobody waits for it any more
        except asyncio.InvalidStateError:  # not answered yet
            self.flights[token] = waiting
            asked.add_done_callback(functools.partial(self._settle, token))
            return
        except asyncio.CancelledError:
            if waiting:  # nobody awaits this one directly: it settles when it lands
                again = self._ask(token)
                self.flights[token] = waiting
                again.add_done_callback(functools.partial(self._settle, token))
            return
        for waiter in waiting:
            if failure is not None:
                waiter.set_exception(failure)
            else:
                waiter.set_result(asked.result())

    def _warn(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self.last_warning > WARN_EVERY_S:
            self.last_warning = now
            log.warning("revoked tokens cannot be checked, allowing requests: %s", exc)


def exists_both(token: str) -> bytes:
    """``EXISTS`` of both of the token's keys, encoded (a verified token is ASCII); joined
    once, as ``stores.redis`` builds a limit key's arguments."""
    raw = token.encode("ascii")
    size = len(raw)
    return b"".join(
        [
            b"*3\r\n$6\r\nEXISTS\r\n$",
            str(size + AUTH_SERVICE_KEY_EXTRA).encode(),
            b"\r\nblacklist:",
            raw,
            b"\r\n$",
            str(size + GATEWAY_KEY_EXTRA).encode(),
            b"\r\nsession:blacklist:",
            raw,
            b"\r\n",
        ]
    )


def revoked_by(reply: Reply) -> bool:
    """Revoked while either key exists, whatever its value (``EXISTS`` counts them); an error
    reply is Redis failing."""
    if type(reply) is int:
        return reply > 0
    if isinstance(reply, RespError):
        raise StoreUnavailable(f"redis refused a revocation check: {reply.message}")
    raise StoreUnavailable(f"redis answered a revocation check with {reply!r:.100}")


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
    return Revocations(shared, period_ms / 1000, clock, isinstance(shared, ClusterClient))
