"""Signing keys from a JWKS URL (``jwt.jwks_url``): loaded at start-up, refreshed in the
background and when a token names a key not yet loaded, each set replacing the last whole.

Until a first set is loaded ``keys`` is None (requests needing a key get 503, /ready says why);
after that, a failed refresh keeps the last good set. Each worker process fetches on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

from jwt import algorithms as jwa

from api_gateway.config.settings import JwtConfig
from api_gateway.jwks_fetch import Fetched, Fetcher, FetchFailed, RefreshSchedule, max_age
from api_gateway.keys import KeySet, VerificationKey, public_key

log = logging.getLogger("api_gateway.jwks")
MAX_ENTRIES: Final = 100  # parsing keys costs the event loop: a document's rest is ignored
MAX_KID: Final = 256
MAX_LOGGED: Final = 256  # distinct entry problems remembered, so each is logged once
FAMILIES: Final[dict[str, Any]] = {
    "RSA": jwa.RSAAlgorithm,
    "EC": jwa.ECAlgorithm,
    "OKP": jwa.OKPAlgorithm,
}
# Members of a private JWK (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2).
PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class Unusable(ValueError):
    """Why one JWKS entry is skipped (safe to log: never key material)."""


def entry_key(entry: object, allowed: frozenset[str]) -> VerificationKey:
    """One JWK as a verification key, or ``Unusable``."""
    if not isinstance(entry, dict):
        raise Unusable("not a JSON object")
    kty = entry.get("kty")
    if kty == "oct":
        raise Unusable("a symmetric ('oct') key: never accepted from a JWKS")
    family = FAMILIES.get(kty) if isinstance(kty, str) else None
    if family is None:
        raise Unusable("an unknown key type ('kty')")
    if any(member in entry for member in PRIVATE_MEMBERS):
        raise Unusable("a private key: a JWKS must publish public keys only")
    kid, use, alg, ops = [entry.get(name) for name in ("kid", "use", "alg", "key_ops")]
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID):
        raise Unusable("its 'kid' is not a short string")
    if use is not None and use != "sig":
        raise Unusable("its 'use' is not 'sig'")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise Unusable("its 'key_ops' do not include 'verify'")
    if alg is not None and (not isinstance(alg, str) or alg not in allowed):
        raise Unusable("its 'alg' is not one of jwt.algorithms")
    try:
        key = family.from_jwk(entry)
    except Exception as exc:  # a third-party parser: junk must skip the entry, never the set
        raise Unusable(f"unreadable key parameters ({type(exc).__name__})") from None
    try:
        return public_key(key, allowed, kid, alg)
    except ValueError as exc:  # keys.py's reasons name sizes and types, never key material
        raise Unusable(str(exc)) from None


def document_keys(body: bytes, allowed: frozenset[str]) -> tuple[list[VerificationKey], list[str]]:
    """The usable keys of a JWKS document and why each other entry was skipped. A document
    that is not a JWKS at all is ``Unusable``."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Unusable("not a JWKS document (invalid JSON)") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise Unusable("not a JWKS document (no 'keys' list)")
    keys: list[VerificationKey] = []
    problems: list[str] = []
    kids: set[str] = set()
    if len(entries) > MAX_ENTRIES:
        problems.append(f"{len(entries)} entries: those after the first {MAX_ENTRIES} ignored")
    for index, entry in enumerate(entries[:MAX_ENTRIES]):
        try:
            key = entry_key(entry, allowed)
            if key.kid is not None and key.kid in kids:
                raise Unusable("its 'kid' is a duplicate (the first entry with it is used)")
        except Unusable as exc:
            problems.append(f"entry {index}{kid_label(entry)} skipped: {exc}")
            continue
        if key.kid is not None:
            kids.add(key.kid)
        keys.append(key)
    return keys, problems


def kid_label(entry: object) -> str:
    kid = entry.get("kid") if isinstance(entry, dict) else None
    return f" (kid {kid[:64]!r})" if isinstance(kid, str) else ""


class JwksKeys:
    """The ``KeySource`` of a gateway with a JWKS: the configured keys plus the JWKS's."""

    def __init__(
        self,
        config: JwtConfig,
        static: list[VerificationKey],
        on_removed: Callable[[], None] | None = None,
        clock: Callable[[], float] | None = None,
        rng: Callable[[], float] = random.random,
        fetch: Callable[[], Awaitable[Fetched]] | None = None,
    ) -> None:
        self.keys: KeySet | None = None
        self.static = list(static)
        self.allowed = frozenset(config.algorithms)
        self.on_removed = on_removed
        self.fetch = (
            fetch
            or Fetcher(config.jwks_url, config.jwks_timeout_ms / 1000, config.jwks_max_bytes).fetch
        )
        self.schedule = RefreshSchedule(rng)
        self.clock = clock
        self.failure = "first fetch in progress"
        self.logged: set[str] = set()
        self.inflight: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def now(self) -> float:
        if self.clock is not None:
            return self.clock()
        assert self.loop is not None
        return self.loop.time()

    def problem(self) -> str | None:
        return None if self.keys is not None else f"JWKS not loaded yet: {self.failure}"

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.refresh()

    async def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        task = self.inflight
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def refresh_unknown(self, kid: str) -> Awaitable[None] | None:
        if self.loop is None or self.closed:
            return None
        if self.inflight is None:
            now = self.now()
            if not self.schedule.may_refresh_unknown(now):
                return None
            self.inflight = self.loop.create_task(self.run_refresh(kid, now))
        # Each waiter gets its own shield: a client that goes away cancels its wait alone,
        # not the fetch the others wait for. The fetch is bounded by jwks_timeout_ms.
        return asyncio.shield(self.inflight)

    def refresh(self) -> None:
        if self.loop is not None and self.inflight is None and not self.closed:
            self.inflight = self.loop.create_task(self.run_refresh(None, self.now()))

    async def run_refresh(self, kid: str | None, started: float) -> None:
        try:
            await self.load()
        finally:
            self.inflight = None
            if kid is not None:
                found = self.keys is not None and kid in self.keys.by_kid
                self.schedule.unknown_refreshed(started, found)
            self.arm_timer()

    def arm_timer(self) -> None:
        if self.closed or self.loop is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        delay = max(self.schedule.next_due - self.now(), 0.0)
        self.timer = self.loop.call_later(delay, self.refresh)

    async def load(self) -> None:
        """Fetch and swap in a new set; any failure keeps the last good one."""
        try:
            fetched = await self.fetch()
            self.install(fetched)
        except (FetchFailed, Unusable) as exc:
            self.failed(str(exc))
        except Exception as exc:  # e.g. a DNS failure's UnicodeError: never kill the refreshes
            self.failed(f"unexpected {type(exc).__name__}")

    def failed(self, reason: str) -> None:
        self.failure = f"fetch failed ({reason})"
        retry = self.schedule.failed(self.now()) - self.now()
        kept = "keeping the last good set" if self.keys is not None else "no key set loaded yet"
        log.warning("JWKS refresh failed: %s; %s; next try in %.0f s", reason, kept, retry)

    def install(self, fetched: Fetched) -> None:
        keys, problems = document_keys(fetched.body, self.allowed)
        for problem in problems:
            self.log_once(problem)
        if not keys:
            raise Unusable(f"no usable key ({len(problems)} entries skipped)")
        old, new = self.keys, KeySet([*self.static, *keys])
        self.keys = new
        next_due = self.schedule.succeeded(self.now(), max_age(fetched.cache_control))
        if old is None or new.fingerprints != old.fingerprints:
            kids = ", ".join(key.kid or "(no kid)" for key in keys)
            log.info(
                "JWKS loaded: %d keys (%s); next refresh in %.0f s",
                len(keys),
                kids,
                next_due - self.now(),
            )
        if old is not None and self.on_removed is not None and new.removed_from(old):
            self.on_removed()

    def log_once(self, problem: str) -> None:
        if problem in self.logged:
            return
        if len(self.logged) < MAX_LOGGED:
            self.logged.add(problem)
        log.warning("JWKS %s", problem)
