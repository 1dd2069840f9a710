"""The authentication settings: what starts, and what stops start-up with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api_gateway import config
from api_gateway.config.settings import ConfigError

SECRET = "s" * 40
EC_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def refused(env: dict[str, str], path: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(path, env)
    return info.value


def test_the_defaults_accept_hs256_with_the_secret_and_the_access_token_cookie() -> None:
    jwt = config.load(env={"JWT_SECRET": SECRET}).jwt
    assert (jwt.algorithms, jwt.audience, jwt.cookie) == (("HS256",), (), "access_token")
    assert jwt.claims.user_id == ("sub", "user_id", "userId")


def test_asymmetric_algorithms_from_the_environment() -> None:
    env = {
        "JWT_ALGORITHMS": "ES256, EdDSA",
        "JWT_PUBLIC_KEY": EC_PEM,
        "JWT_AUDIENCE": "a,b",
        "JWT_JWKS_URL": "https://auth.internal/.well-known/jwks.json",
    }
    jwt = config.load(env=env).jwt
    assert jwt.algorithms == ("ES256", "EdDSA")
    assert jwt.audience == ("a", "b")
    assert jwt.access_secret == ""  # no HMAC algorithm, so no secret is needed


def test_the_public_key_can_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "public.pem"
    key_file.write_text(EC_PEM)
    env = {"JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY_FILE": str(key_file)}
    assert config.load(env=env).jwt.public_key.strip() == EC_PEM.strip()


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "HS256,none"}, "jwt.algorithms", "'none'"),
        ({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "RS256"}, "jwt.algorithms", "need a key"),
        ({"JWT_ALGORITHMS": "HS256"}, "jwt.access_secret", "JWT_SECRET"),
        (
            {"JWT_SECRET": SECRET, "JWT_PUBLIC_KEY": EC_PEM},
            "jwt.algorithms",
            "only HMAC",
        ),
        ({"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": EC_PEM}, "jwt.public_key", "none of"),
        ({"JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": "junk"}, "jwt.public_key", "no PEM"),
        ({"JWT_ALGORITHMS": "ES256", "JWT_JWKS_URL": "ftp://x/j"}, "jwt.jwks_url", "http"),
        ({"JWT_ALGORITHMS": "ES256", "JWT_JWKS_URL": "http://h:99999/"}, "jwt.jwks_url", "port"),
        ({"JWT_SECRET": SECRET, "API_KEY_PEPPER": "short"}, "api_keys.pepper", "32 bytes"),
    ],
)
def test_bad_authentication_settings_stop_start_up_naming_the_key(
    env: dict[str, str], key: str, words: str
) -> None:
    error = refused(env)
    assert error.key == key
    assert words in str(error)


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"routes": {"/tickets": {"auth": ["jwt", "oauth"]}}}, "routes./tickets.auth"),
        ({"routes": {"/tickets": {"auth": []}}}, "routes./tickets.auth"),
        ({"jwt": {"claims": {"user_id": []}}}, "jwt.claims.user_id"),
        ({"jwt": {"claims": {"tenant": ["t"]}}}, "jwt.claims.tenant"),
        ({"jwt": {"cookie": "a cookie"}}, "jwt.cookie"),
        ({"api_keys": {"default_rate_limit": "lots"}}, "api_keys.default_rate_limit"),
    ],
)
def test_bad_yaml_authentication_settings_name_the_key(
    tmp_path: Path, document: dict[str, object], key: str
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    assert refused({"JWT_SECRET": SECRET}, str(path)).key == key


def test_routes_accepting_api_keys_by_default() -> None:
    routes = config.load(env={"JWT_SECRET": SECRET}).routes
    keyed = sorted(route.prefix for route in routes if "api_key" in route.auth)
    assert keyed == ["/integrations", "/search"]


def test_secrets_stay_out_of_the_configuration_repr() -> None:
    loaded = config.load(env={"JWT_SECRET": SECRET, "API_KEY_PEPPER": "p" * 40})
    assert SECRET not in repr(loaded)
    assert "p" * 40 not in repr(loaded)
