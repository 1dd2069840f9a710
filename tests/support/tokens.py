"""Access tokens as the auth service would mint them (HS256, issuer ``tickettoken-api``)."""

from __future__ import annotations

import time
from typing import Any

import jwt

JWT_SECRET = "integration-test-secret-" + "0123456789abcdef" * 3  # 72 bytes: fine for HS512 too
OTHER_SECRET = "some-other-secret-that-is-long-enough-000"
ISSUER = "tickettoken-api"
UNSET: Any = object()


def claims(
    sub: str = "user-1",
    tenant_id: str = "tenant-1",
    role: str = "customer",
    email: str = "user@example.com",
    expires_in_s: float | None = 3600,
    not_before_in_s: float | None = None,
    token_type: str | None = None,
    issuer: str = ISSUER,
    **extra: Any,
) -> dict[str, Any]:
    """The claims of an access token; ``expires_in_s=None`` leaves ``exp`` out."""
    now = int(time.time())
    document: dict[str, Any] = {
        "sub": sub,
        "tenant_id": tenant_id,
        "role": role,
        "email": email,
        "iss": issuer,
        "iat": now,
    }
    if expires_in_s is not None:
        document["exp"] = now + int(expires_in_s)
    if not_before_in_s is not None:
        document["nbf"] = now + int(not_before_in_s)
    if token_type is not None:
        document["type"] = token_type
    document.update(extra)
    return {key: value for key, value in document.items() if value is not UNSET}


def mint(secret: str = JWT_SECRET, algorithm: str = "HS256", **claim_overrides: Any) -> str:
    """A signed token; keyword arguments go to ``claims`` (pass ``sub=UNSET`` to drop one)."""
    return jwt.encode(claims(**claim_overrides), secret, algorithm=algorithm)


def mint_unsigned(**claim_overrides: Any) -> str:
    """A token with ``alg: none`` and no signature."""
    # PyJWT takes no key for "none"; its annotations do not say so.
    return jwt.encode(claims(**claim_overrides), None, algorithm="none")  # type: ignore[arg-type]
