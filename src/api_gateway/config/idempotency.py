"""Idempotency-key settings: the top-level ``idempotency`` section and the route and endpoint
key ``idempotency: required | optional | off``."""

from __future__ import annotations

from typing import Final

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError, IdempotencyConfig

MODES: Final = ("required", "optional", "off")


def build_idempotency(s: Section) -> IdempotencyConfig:
    config = IdempotencyConfig(
        ttl_ms=s.integer("ttl_ms", 1000),
        lock_ms=s.integer("lock_ms", 1000),
        max_body_bytes=s.integer("max_body_bytes", 0),
        max_entries=s.integer("max_entries", 1),
        max_bytes=s.integer("max_bytes", 1024),
    )
    s.done()
    return config


def idempotency_mode(s: Section, default: str | None) -> str | None:
    """A route's or endpoint's ``idempotency`` (``default`` when absent)."""
    value = s.raw("idempotency", default)
    if value is None and default is None:
        return None
    if value not in MODES:
        raise ConfigError(s.key("idempotency"), f"must be one of {', '.join(MODES)}, got {value!r}")
    return str(value)
