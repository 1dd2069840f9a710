"""The ``webhooks.stripe`` settings and ``STRIPE_WEBHOOK_SECRET``: verified Stripe webhooks.

A secret never appears in a complaint: a bad entry is named by its position only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError, StripeWebhooksConfig

SECRET_KEY: Final = "webhooks.stripe.secrets"
SECRET_VARIABLE: Final = "STRIPE_WEBHOOK_SECRET"
SECRET_PREFIX: Final = "whsec_"
# Commas separate secrets (rotation); a secret file may hold one per line too.
SEPARATORS: Final = re.compile(r"[,\s]+")


def apply_webhooks_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    value = env.get(SECRET_VARIABLE)
    if not value:
        return
    webhooks = document.setdefault("webhooks", {})
    if not isinstance(webhooks, dict):
        raise ConfigError("webhooks", "must be a mapping")
    stripe = webhooks.setdefault("stripe", {})
    if not isinstance(stripe, dict):
        raise ConfigError("webhooks.stripe", "must be a mapping")
    stripe["secrets"] = [part for part in SEPARATORS.split(value) if part]


def build_webhooks(s: Section | None, route_prefixes: Iterable[str]) -> StripeWebhooksConfig:
    if s is None:
        return StripeWebhooksConfig()
    stripe = s.section("stripe") if "stripe" in s.data else None
    s.done()
    if stripe is None:
        return StripeWebhooksConfig()
    default = StripeWebhooksConfig()
    config = StripeWebhooksConfig(
        secrets=_secrets(stripe.raw("secrets", [])),
        tolerance_ms=stripe.integer("tolerance_ms", 1000, default.tolerance_ms),
        dedupe_ttl_ms=stripe.integer("dedupe_ttl_ms", 0, default.dedupe_ttl_ms),
        max_events=stripe.integer("max_events", 1, default.max_events),
        key_prefix=stripe.text("key_prefix", default.key_prefix),
        paths=_paths(stripe, tuple(route_prefixes)),
    )
    stripe.done()
    return config


def _secrets(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part for part in SEPARATORS.split(value) if part]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(SECRET_KEY, f"({SECRET_VARIABLE}) must be a list of secrets")
    for position, secret in enumerate(value, 1):
        if not secret.startswith(SECRET_PREFIX) or len(secret) == len(SECRET_PREFIX):
            raise ConfigError(
                SECRET_KEY,
                f"({SECRET_VARIABLE}) secret {position} is not a Stripe endpoint secret "
                f"({SECRET_PREFIX}...)",
            )
    return tuple(dict.fromkeys(value))


def _paths(s: Section, route_prefixes: tuple[str, ...]) -> tuple[str, ...]:
    # The loader imports this module: its path check is reached at call time.
    from api_gateway.config.loader import is_clean_path

    default = StripeWebhooksConfig().paths
    paths = s.texts("paths", list(default))
    for path in paths:
        if not is_clean_path(path):
            raise ConfigError(s.key("paths"), f"{path!r} is not a clean path")
        if not any(path == p or path.startswith(p + "/") for p in route_prefixes):
            # A typo would leave the real endpoint unverified: refuse it.
            raise ConfigError(s.key("paths"), f"{path!r} is no route's path")
    return tuple(dict.fromkeys(paths))
