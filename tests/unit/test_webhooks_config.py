"""The ``webhooks.stripe`` settings and STRIPE_WEBHOOK_SECRET(_FILE): defaults, rotation, and
every rejection naming its key without ever showing a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError, GatewayConfig

ENV = {"JWT_SECRET": "a" * 32}
FIRST = "whsec_first_0123456789abcdef"
SECOND = "whsec_second_fedcba9876543210"


def loaded(
    env: dict[str, str] | None = None, document: Any = None, tmp: Path | None = None
) -> GatewayConfig:
    path = None
    if document is not None:
        assert tmp is not None
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(document))
    return load(str(path) if path else None, {**ENV, **(env or {})})


def refused(
    env: dict[str, str] | None = None, document: Any = None, tmp: Path | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        loaded(env, document, tmp)
    return caught.value


def test_without_a_secret_webhooks_are_not_verified_and_the_defaults_hold() -> None:
    settings = loaded().stripe_webhooks

    assert not settings.enabled
    assert settings.tolerance_ms == 300_000
    assert settings.dedupe_ttl_ms == 86_400_000
    assert settings.paths == ("/webhooks/stripe", "/payments/webhooks/stripe")


def test_the_secret_comes_from_the_environment_comma_separated_for_rotation() -> None:
    settings = loaded({"STRIPE_WEBHOOK_SECRET": f"{FIRST}, {SECOND},{FIRST}"}).stripe_webhooks

    assert settings.enabled
    assert settings.secrets == (FIRST, SECOND)


def test_the_secret_may_come_from_a_file_one_per_line(tmp_path: Path) -> None:
    secret = tmp_path / "stripe"
    secret.write_text(f"{FIRST}\n{SECOND}\n")

    assert loaded({"STRIPE_WEBHOOK_SECRET_FILE": str(secret)}).stripe_webhooks.secrets == (
        FIRST,
        SECOND,
    )
    doubled = refused({"STRIPE_WEBHOOK_SECRET_FILE": str(secret), "STRIPE_WEBHOOK_SECRET": FIRST})
    assert doubled.key == "STRIPE_WEBHOOK_SECRET_FILE"


def test_a_secret_stays_out_of_reprs() -> None:
    config = loaded({"STRIPE_WEBHOOK_SECRET": FIRST})

    assert FIRST not in repr(config)
    assert FIRST not in repr(config.stripe_webhooks)


@pytest.mark.parametrize("value", ["sk_live_51Habcdef", "whsec_", f"{FIRST},rk_test_1"])
def test_a_secret_that_is_not_a_stripe_endpoint_secret_is_refused_unshown(value: str) -> None:
    error = refused({"STRIPE_WEBHOOK_SECRET": value})

    assert error.key == "webhooks.stripe.secrets"
    assert "STRIPE_WEBHOOK_SECRET" in str(error)
    for part in value.split(","):
        assert part not in str(error).replace("whsec_...", "")


def test_settings_come_from_yaml(tmp_path: Path) -> None:
    document = {
        "webhooks": {
            "stripe": {"tolerance_ms": 60000, "dedupe_ttl_ms": 0, "paths": ["/webhooks/stripe"]}
        }
    }

    settings = loaded({"STRIPE_WEBHOOK_SECRET": FIRST}, document, tmp_path).stripe_webhooks

    assert (settings.tolerance_ms, settings.dedupe_ttl_ms) == (60000, 0)
    assert settings.paths == ("/webhooks/stripe",)


@pytest.mark.parametrize(
    ("stripe", "key"),
    [
        ({"tolerance_ms": 10}, "webhooks.stripe.tolerance_ms"),
        ({"dedupe_ttl_ms": -1}, "webhooks.stripe.dedupe_ttl_ms"),
        ({"max_events": 0}, "webhooks.stripe.max_events"),
        ({"key_prefix": ""}, "webhooks.stripe.key_prefix"),
        ({"paths": ["/nowhere/stripe"]}, "webhooks.stripe.paths"),
        ({"paths": ["webhooks/stripe"]}, "webhooks.stripe.paths"),
        ({"paths": ["/webhooks/../stripe"]}, "webhooks.stripe.paths"),
        ({"secrets": "whsec_x", "surprise": 1}, "webhooks.stripe.surprise"),
    ],
)
def test_bad_settings_are_refused_by_key(tmp_path: Path, stripe: dict[str, Any], key: str) -> None:
    assert refused(None, {"webhooks": {"stripe": stripe}}, tmp_path).key == key


def test_an_unknown_webhook_provider_is_refused(tmp_path: Path) -> None:
    assert refused(None, {"webhooks": {"paypal": {}}}, tmp_path).key == "webhooks.paypal"
