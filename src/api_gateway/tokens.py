"""Access tokens: verification against an allowlist of algorithms and the keys that fit them,
with a bounded cache of verified tokens, and minting for development.

A token's header picks an algorithm only from ``jwt.algorithms``, and a key only among those
whose type fits that algorithm (``keys.py``): nothing in a token can choose how it is checked.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import jwt

from api_gateway.compact import DOT, b64decode, numeric_date, parse_payload, well_formed
from api_gateway.config.settings import ClaimNames, ConfigError, JwtConfig
from api_gateway.errors import KeysNotLoaded, Unauthorized
from api_gateway.keys import KeySet, VerificationKey, pem_keys, secret_key
from api_gateway.memo import Memo
from api_gateway.types import Claims
from api_gateway.verified import ENTRY_OVERHEAD, VerifiedTokens, entry_cost

__all__ = ["ENTRY_OVERHEAD", "entry_cost"]  # where the cache's accounting is asked for

# Claim values written into headers (``safe_claim``): these bytes, 1 to 128 of them.
SAFE_CHARACTERS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-"
# Each safe byte to itself, each other one to a safe byte (so it changes).
ONLY_SAFE: Final = bytes(
    [byte if byte in SAFE_CHARACTERS else SAFE_CHARACTERS[0] for byte in range(256)]
)
MAX_CLAIM: Final = 128
INTERN: Final = sys.intern
MAX_KID: Final = 256
SCHEME: Final = b"bearer "
SCHEME_LENGTH: Final = len(SCHEME)
# The one spelling a token is cached under: any other is parsed, then looked up as this.
CANONICAL: Final = b"Bearer "
OWS: Final = b" \t"
SPACE: Final = ord(" ")
TAB: Final = ord("\t")
MINT_ALGORITHM: Final = "HS256"
# Header segments checked before, with the algorithm and kid they name: an issuer writes the
# same few headers on every token, so a token never seen before skips decoding its header. Only
# headers that passed every check are kept (keyed by the whole segment); a longer one is checked
# each time.
HEADER_MEMO_SIZE: Final = 256
MAX_MEMO_HEADER: Final = 512


class KeySource(Protocol):
    """Where verification keys come from: fixed at start-up, or a JWKS that changes."""

    # The keys now; None while none was ever loaded (requests get 503, /ready says why).
    keys: KeySet | None

    def refresh_unknown(self, kid: str) -> Awaitable[None] | None:
        """A token names ``kid``, which no loaded key has: a refresh to wait for (started now,
        or one already running), or None when none may start (too soon, nothing to refresh)."""
        ...

    def problem(self) -> str | None:
        """Why no key set is loaded (None once one is)."""
        ...


class StaticKeys:
    """The configured secret and PEM keys: loaded once, never refreshed."""

    def __init__(self, keys: list[VerificationKey]) -> None:
        self.keys: KeySet | None = KeySet(keys)

    def refresh_unknown(self, kid: str) -> Awaitable[None] | None:
        return None

    def problem(self) -> str | None:
        return None


def configured_keys(config: JwtConfig) -> list[VerificationKey]:
    """The keys the configuration itself holds: the HMAC secret, the PEM public keys."""
    keys = []
    hmac = secret_key(config.access_secret.encode(), config.algorithms)
    if hmac is not None and config.access_secret:
        keys.append(hmac)
    if config.public_key:
        keys += pem_keys(config.public_key, config.algorithms)
    return keys


def bearer_token(credentials: bytes) -> bytes:
    """The token of an Authorization value: ``Bearer``, in any case, one space, the token.

    Trailing whitespace is not part of a field value (RFC 9110 §5.5) and is ignored; anything
    else (another scheme, two spaces, whitespace inside) is refused, so one token has one
    spelling and padding cannot mint new cache entries.
    """
    value = credentials.rstrip(OWS)
    token = value[SCHEME_LENGTH:]
    # A first byte compared by value: `token[:1] in OWS` tries it as an int first (COMPILED.md §3).
    if value[:SCHEME_LENGTH].lower() != SCHEME or not token or token[0] in (SPACE, TAB):
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'", error="invalid_request"
        )
    return token


class TokenVerifier:
    """Verifies access tokens and keeps the verified ones, bounded in entries and in bytes."""

    def __init__(
        self,
        config: JwtConfig,
        clock: Callable[[], float] = time.time,
        keys: KeySource | None = None,
    ) -> None:
        self.source: KeySource = keys or StaticKeys(configured_keys(config))
        self.algorithms = frozenset(config.algorithms)
        self.issuer = config.issuer
        self.audience = frozenset(config.audience)
        self.claim_plan = ClaimPlan(config.claims)
        self.leeway = config.leeway_s
        # Longer Authorization values are refused before any parsing (the scheme and a space).
        self.max_credentials = config.max_token_bytes + SCHEME_LENGTH
        self.clock = clock
        # Verified tokens by their canonical Authorization value (``Bearer <token>``).
        self.cache = VerifiedTokens(config.cache_size, config.cache_max_bytes)
        self.headers: Memo[bytes, tuple[str, str | None]] = Memo(HEADER_MEMO_SIZE)

    @property
    def cached_bytes(self) -> int:
        return self.cache.cached_bytes

    def authenticate(self, credentials: bytes) -> Claims:
        """The claims of an ``Authorization`` value. The canonical spelling of a token verified
        before is one dictionary lookup; any other is parsed first, and adds no entry."""
        if len(credentials) > self.max_credentials:
            raise Unauthorized("the access token is longer than the gateway accepts")
        claims = self.cache.get(credentials)
        if claims is None or claims.expires_at + self.leeway < self.clock():
            token = bearer_token(credentials)
            canonical = len(token) + SCHEME_LENGTH == len(credentials)
            if claims is None and canonical and credentials.startswith(CANONICAL):
                return self._verified(credentials, token)  # looked up already: a miss
            return self.claims_of(token)
        return claims

    def verify(self, token: str) -> Claims:
        return self.claims_of(token.encode("utf-8", "surrogatepass"))

    def claims_of(self, token: bytes) -> Claims:
        key = CANONICAL + token
        claims = self.cache.get(key)
        if claims is not None:
            if claims.expires_at + self.leeway >= self.clock():
                return claims
            self.cache.forget(key)
            raise Unauthorized("the access token has expired")
        return self._verified(key, token)

    def _verified(self, key: bytes, token: bytes) -> Claims:
        claims = self._verify_uncached(token)
        self.cache.put(key, claims)
        return claims

    def forget_all(self) -> None:
        """A key was withdrawn: tokens it verified must be checked again."""
        self.cache.clear()

    def _verify_uncached(self, token: bytes) -> Claims:
        if not well_formed(token):
            raise Unauthorized("the access token is not three base64url segments")
        # The shape admits exactly two dots: the segments are found, never split into copies.
        first = token.index(DOT)
        second = token.index(DOT, first + 1)
        header_segment = token[:first]
        checked = self.headers.get(header_segment)
        if checked is None:
            checked = self._check_header(header_segment)
        algorithm, kid = checked
        keys = self.source.keys
        if keys is None:
            raise KeysNotLoaded("the gateway has no signing keys yet; try again shortly")
        if not keys.select(algorithm, kid).verify(
            algorithm, token[:second], b64decode(token[second + 1 :])
        ):
            raise Unauthorized("the access token is invalid")
        payload = parse_payload(b64decode(token[first + 1 : second]))
        for name in ("exp", "iss"):
            if name not in payload:
                raise Unauthorized(f"the access token lacks the '{name}' claim")
        if payload["iss"] != self.issuer:
            raise Unauthorized("the access token has the wrong issuer")
        self._check_audience(payload)
        self._check_times(payload)
        if payload.get("type") == "refresh":
            raise Unauthorized("a refresh token cannot be used as an access token")
        return claims_from(payload, self.claim_plan)

    def _check_header(self, segment: bytes) -> tuple[str, str | None]:
        """The algorithm and kid a header segment names, once it passed every check."""
        header = parse_payload(b64decode(segment), "header")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise Unauthorized("the access token's algorithm is not accepted")
        if "crit" in header:
            # RFC 7515 §4.1.11: extensions the gateway does not know must not be ignored.
            raise Unauthorized("the access token names critical extensions")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID):
            raise Unauthorized("the access token's 'kid' is not a short string")
        checked = (algorithm, kid)
        if len(segment) <= MAX_MEMO_HEADER:
            self.headers.put(segment, checked)
        return checked

    def _check_audience(self, payload: dict[str, Any]) -> None:
        """With ``jwt.audience`` set, ``aud`` is required and must name one of them; without,
        any ``aud`` is accepted (RFC 7519 §4.1.3 leaves that to the application)."""
        if not self.audience:
            return
        audience = payload.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not all(isinstance(a, str) for a in named):
            raise Unauthorized("the access token names no audience")
        if self.audience.isdisjoint(named):
            raise Unauthorized("the access token is for another audience")

    def _check_times(self, payload: dict[str, Any]) -> None:
        now = self.clock()
        exp = numeric_date("exp", payload.get("exp"))
        nbf = numeric_date("nbf", payload.get("nbf", 0))
        if exp + self.leeway < now:
            raise Unauthorized("the access token has expired")
        if nbf - self.leeway > now:
            raise Unauthorized("the access token is not valid yet")


def claim(payload: dict[str, Any], names: tuple[str, ...], field: str) -> object:
    """The value of the first of ``names`` present; two present with different values: 401."""
    found: object = None
    for name in names:
        value = payload.get(name)
        if value is None:
            continue
        if found is not None and value != found:
            raise Unauthorized(f"the access token's claims disagree on the {field}")
        found = value
    return found


def safe_claim(value: object) -> bool:
    """``[A-Za-z0-9_.:@-]{1,128}``, what a header line may carry as it is: one C pass of
    ``bytes.translate`` that changes every other byte (a regex match costs about 1.7k
    instructions a claim; deleting bytes builds a table per call)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM or not value.isascii():
        return False
    encoded = value.encode("ascii")
    return encoded.translate(ONLY_SAFE) == encoded


class ClaimPlan:
    """``jwt.claims`` as read for every token: the names in native attributes, where
    ``ClaimNames`` (an interpreted dataclass) costs a generic attribute lookup each."""

    __slots__ = ("email", "role", "tenant_id", "user_id")

    def __init__(self, names: ClaimNames) -> None:
        self.user_id: tuple[str, ...] = names.user_id
        self.tenant_id: tuple[str, ...] = names.tenant_id
        self.role: tuple[str, ...] = names.role
        self.email: tuple[str, ...] = names.email


DEFAULT_PLAN: Final = ClaimPlan(ClaimNames())


def claims_from(payload: dict[str, Any], plan: ClaimPlan = DEFAULT_PLAN) -> Claims:
    user_id = claim(payload, plan.user_id, "user id")
    tenant_id = claim(payload, plan.tenant_id, "tenant")
    role = claim(payload, plan.role, "role") or ""
    if not safe_claim(user_id):
        raise Unauthorized("the access token's user id claim is missing or not a safe value")
    if not safe_claim(tenant_id):
        raise Unauthorized("the access token's tenant claim is missing or not a safe value")
    if role != "" and not safe_claim(role):
        raise Unauthorized("the access token's 'role' claim is not a safe value")
    email = claim(payload, plan.email, "email")
    exp = payload["exp"]
    assert isinstance(user_id, str) and isinstance(tenant_id, str) and isinstance(role, str)
    # A handful of tenants and roles among a worker's cached tokens: one string object each
    # (interned) instead of one per token, about a fifth of what an entry costs.
    tenant_id, role = INTERN(tenant_id), INTERN(role)
    return Claims(user_id, tenant_id, role, email if isinstance(email, str) else "", float(exp))


def mint(
    config: JwtConfig,
    subject: str,
    tenant: str,
    role: str = "user",
    ttl_s: int | None = None,
    email: str | None = None,
) -> str:
    if not config.access_secret:
        raise ConfigError("JWT_SECRET", "development tokens are signed HS256 with it: set it")
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant,
        "role": role,
        "iss": config.issuer,
        "iat": now,
        "exp": now + (ttl_s or config.access_ttl_s),
        "type": "access",
    }
    if email:
        payload["email"] = email
    return jwt.encode(payload, config.access_secret, algorithm=MINT_ALGORITHM)


def parse_ttl(text: str) -> int:
    """'90', '90s', '15m', '1h', '7d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 1h, 7d)")
    return int(match.group(1)) * units[match.group(2) or "s"]
