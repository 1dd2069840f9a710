"""The authentication settings: ``jwt`` (algorithms, keys, JWKS, audience, claim names, the
browser cookie), ``api_keys``, and a route's ``auth`` list, with their environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from api_gateway.config.sections import Section, split_list
from api_gateway.config.settings import ApiKeysConfig, ClaimNames, ConfigError, JwtConfig

MIN_SECRET_BYTES: Final = 32
MIN_REVOCATION_CHECK_MS: Final = 100
AUTH_METHODS: Final = frozenset({"jwt", "api_key"})
CLAIM_FIELDS: Final = ("user_id", "tenant_id", "role", "email")
CLAIM_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
COOKIE_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an RFC 9110 token
RATE: Final = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)(ms|s|m|h)")
RATE_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def apply_auth_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    jwt = document["jwt"]
    shared_secret = env.get("JWT_SECRET")
    jwt["access_secret"] = env.get("JWT_ACCESS_SECRET") or shared_secret or jwt["access_secret"]
    jwt["refresh_secret"] = env.get("JWT_REFRESH_SECRET") or shared_secret or jwt["refresh_secret"]
    for variable, key in (
        ("JWT_ALGORITHMS", "algorithms"),
        ("JWT_AUDIENCE", "audience"),
    ):
        if env.get(variable):
            jwt[key] = split_list(env[variable])
    for variable, key in (
        ("JWT_ISSUER", "issuer"),
        ("JWT_PUBLIC_KEY", "public_key"),
        ("JWT_JWKS_URL", "jwks_url"),
    ):
        if env.get(variable):
            jwt[key] = env[variable]
    keys = document.setdefault("api_keys", {})
    if not isinstance(keys, dict):
        raise ConfigError("api_keys", "must be a mapping")
    if env.get("API_KEY_PEPPER"):
        keys["pepper"] = env["API_KEY_PEPPER"]


def build_jwt(s: Section) -> JwtConfig:
    # Imported here: keys.py reaches errors and types, which import the settings module.
    from api_gateway.keys import HMAC, SUPPORTED, pem_keys

    algorithms = s.texts("algorithms", ["HS256"])
    for algorithm in algorithms:
        if algorithm not in SUPPORTED:
            raise ConfigError(
                s.key("algorithms"),
                f"{algorithm!r} is not one of {', '.join(sorted(SUPPORTED))}",
            )
    if not algorithms:
        raise ConfigError(s.key("algorithms"), "must name at least one algorithm")
    hmac = bool(HMAC.intersection(algorithms))
    secrets = []
    for name in ("access_secret", "refresh_secret"):
        secret = s.raw(name, None)
        if not secret and hmac:
            raise ConfigError(f"jwt.{name}", "is required: set JWT_SECRET or JWT_ACCESS_SECRET")
        if secret and len(str(secret).encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"jwt.{name}", f"must be at least {MIN_SECRET_BYTES} bytes long")
        secrets.append(str(secret or ""))
    public_key = s.raw("public_key", None) or ""
    jwks_url = s.raw("jwks_url", None) or ""
    asymmetric = set(algorithms) - HMAC
    if (public_key or jwks_url) and not asymmetric:
        raise ConfigError(
            "jwt.algorithms",
            "a public key or JWKS is configured but only HMAC algorithms are allowed: add the "
            "issuer's algorithm (e.g. JWT_ALGORITHMS=RS256)",
        )
    if public_key:
        try:
            pem_keys(str(public_key), algorithms)
        except ValueError as exc:
            raise ConfigError("jwt.public_key", f"(JWT_PUBLIC_KEY) {exc}") from None
    if jwks_url:
        parts = urlsplit(str(jwks_url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("jwt.jwks_url", f"must be an http(s) URL, got {jwks_url!r}")
        try:
            _ = parts.port
            parts.netloc.encode("ascii")
        except ValueError:
            raise ConfigError("jwt.jwks_url", "has an invalid port or a non-ASCII host") from None
    if asymmetric and not (public_key or jwks_url):
        raise ConfigError(
            "jwt.algorithms",
            f"{', '.join(sorted(asymmetric))} need a key: set JWT_PUBLIC_KEY(_FILE) or "
            "JWT_JWKS_URL",
        )
    config = JwtConfig(
        access_secret=secrets[0],
        refresh_secret=secrets[1],
        issuer=s.text("issuer"),
        access_ttl_s=s.integer("access_ttl_s", 1),
        refresh_ttl_s=s.integer("refresh_ttl_s", 1),
        leeway_s=s.integer("leeway_s", 0),
        cache_size=s.integer("cache_size", 0),
        cache_max_bytes=s.integer("cache_max_bytes", 0, 96 * 1024 * 1024),
        max_token_bytes=s.integer("max_token_bytes", 64, 8192),
        algorithms=tuple(dict.fromkeys(algorithms)),
        public_key=str(public_key),
        jwks_url=str(jwks_url),
        jwks_timeout_ms=s.integer("jwks_timeout_ms", 1, 5000),
        jwks_max_bytes=s.integer("jwks_max_bytes", 1024, 262144),
        audience=s.texts("audience", []),
        claims=build_claim_names(s.section("claims") if "claims" in s.data else None),
        cookie=cookie_name(s),
        revocation_check_ms=revocation_period(s),
    )
    s.done()
    return config


def revocation_period(s: Section) -> int:
    """0 turns the revoked-token check off; anything shorter than 100 ms would ask Redis on
    nearly every request."""
    period = s.integer("revocation_check_ms", 0, 5000)
    if 0 < period < MIN_REVOCATION_CHECK_MS:
        raise ConfigError(
            s.key("revocation_check_ms"),
            f"must be 0 (off) or at least {MIN_REVOCATION_CHECK_MS}, got {period}",
        )
    return period


def build_claim_names(s: Section | None) -> ClaimNames:
    if s is None:
        return ClaimNames()
    names = {}
    for field in CLAIM_FIELDS:
        if field in s.data:
            listed = s.texts(field)
            if not listed or not all(CLAIM_NAME.fullmatch(name) for name in listed):
                raise ConfigError(s.key(field), "must list claim names (letters, digits, _.:-)")
            names[field] = listed
    s.done()
    return ClaimNames(**names)


def cookie_name(s: Section) -> str:
    name = s.raw("cookie", "access_token")
    if name in (None, "", False):
        return ""
    if not isinstance(name, str) or not COOKIE_NAME.fullmatch(name):
        raise ConfigError(s.key("cookie"), f"must be a cookie name, got {name!r}")
    return name


def build_api_keys(s: Section) -> ApiKeysConfig:
    pepper = s.raw("pepper", None) or ""
    if pepper and len(str(pepper).encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            "api_keys.pepper", f"(API_KEY_PEPPER) must be at least {MIN_SECRET_BYTES} bytes long"
        )
    default = ApiKeysConfig()
    rate = s.raw("default_rate_limit", default.default_rate_limit)
    try:
        parse_rate(str(rate))
    except ValueError as exc:
        raise ConfigError(s.key("default_rate_limit"), str(exc)) from None
    config = ApiKeysConfig(
        pepper=str(pepper),
        path=s.text("path", default.path),
        key_prefix=s.text("key_prefix", default.key_prefix),
        default_rate_limit=str(rate),
        recheck_ms=s.integer("recheck_ms", 100, default.recheck_ms),
    )
    s.done()
    return config


def parse_rate(text: str) -> tuple[int, int]:
    """``1000/60s`` -> (1000, 60000): requests per window in milliseconds."""
    match = RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 1000/60s (units ms, s, m, h)")
    return int(match.group(1)), int(match.group(2)) * RATE_UNITS_MS[match.group(3)]


def route_auth(entry: Section) -> frozenset[str]:
    methods = entry.texts("auth", ["jwt"])
    unknown = [m for m in methods if m not in AUTH_METHODS]
    if unknown or not methods:
        raise ConfigError(entry.key("auth"), f"must list jwt and/or api_key, got {list(methods)!r}")
    return frozenset(methods)
