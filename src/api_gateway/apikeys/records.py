"""What is stored of an API key, and the pure rules that decide whether a key still opens it.

Times are wall-clock seconds since the epoch (the CLI and every gateway read them), 0 for never.
A rotation keeps the id: the new key's hash becomes ``hash``, the old one moves to
``previous_hash`` until ``previous_until`` (the grace period), so upstreams and rate limits see
one client throughout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from api_gateway.apikeys.format import ID_SHAPE, same_digest

# A tenant travels upstream as x-tenant-id: the same rule as a token's tenant claim.
TENANT_SHAPE: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
MAX_NAME_LENGTH: Final = 200
FIELDS: Final = (
    "id", "tenant", "name", "routes", "rate", "created_at", "expires_at", "revoked_at", "hash",
    "previous_hash", "previous_until",
)  # fmt: skip
TIMES: Final = ("created_at", "expires_at", "revoked_at", "previous_until")
UNKNOWN: Final = "unknown API key"  # also for a wrong secret: which ids exist stays private


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    name: str
    routes: tuple[str, ...]  # canonical route prefixes; () = every route that accepts keys
    rate: str  # e.g. "1000/60s"; "" = api_keys.default_rate_limit
    created_at: float
    expires_at: float = 0.0
    revoked_at: float = 0.0
    hash: str = ""
    previous_hash: str = ""
    previous_until: float = 0.0
    last_used: float = 0.0  # written by the gateways only (``touch``), never by ``put``

    def refusal(self, key_digest: str, now_s: float) -> str | None:
        """Why the key with this digest is refused now, or None if it is accepted."""
        # Both compared every time, so the time taken does not tell which one matched.
        current = same_digest(key_digest, self.hash) if self.hash else False
        previous = same_digest(key_digest, self.previous_hash) if self.previous_hash else False
        if not (current or previous):
            return UNKNOWN
        if self.revoked_at:
            return "the API key was revoked"
        if self.expires_at and now_s >= self.expires_at:
            return "the API key has expired"
        if not current and now_s >= self.previous_until:
            return "the API key was rotated and its grace period is over"
        return None

    def allows(self, route: str) -> bool:
        return not self.routes or route in self.routes

    def status(self, now_s: float) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and now_s >= self.expires_at:
            return "expired"
        return "active"

    def rotated(self, new_hash: str, now_s: float, grace_s: float) -> KeyRecord:
        return replace(self, hash=new_hash, previous_hash=self.hash, previous_until=now_s + grace_s)

    def to_fields(self) -> dict[str, str]:
        """The stored fields, as text (``last_used`` is not one: see ``touch``)."""
        fields = {name: str(getattr(self, name)) for name in FIELDS}
        fields["routes"] = ",".join(self.routes)
        for name in TIMES:
            fields[name] = repr(float(getattr(self, name)))
        return fields


def record_of(fields: Mapping[str, str]) -> KeyRecord:
    """A record from stored fields; ValueError for one that is incomplete or not safe to use."""
    try:
        record = KeyRecord(
            id=fields["id"],
            tenant=fields["tenant"],
            name=fields["name"],
            routes=tuple(r for r in fields["routes"].split(",") if r),
            rate=fields["rate"],
            created_at=float(fields["created_at"]),
            expires_at=float(fields["expires_at"]),
            revoked_at=float(fields["revoked_at"]),
            hash=fields["hash"],
            previous_hash=fields.get("previous_hash", ""),
            previous_until=float(fields.get("previous_until") or 0),
            last_used=float(fields.get("last_used") or 0),
        )
    except KeyError as missing:
        raise ValueError(f"the stored key record lacks {missing}") from None
    if not ID_SHAPE.fullmatch(record.id) or not TENANT_SHAPE.fullmatch(record.tenant):
        raise ValueError("the stored key record has an unusable id or tenant")
    return record


def when(seconds: float, never: str = "never") -> str:
    """A stored time for people: ISO 8601 in UTC, to the second."""
    if not seconds:
        return never
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
