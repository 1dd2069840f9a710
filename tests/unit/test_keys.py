"""Verification keys: a key checks only its own family's algorithms, and a token's header
selects among the keys that fit it, never the other way round."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from api_gateway.config.settings import JwtConfig
from api_gateway.errors import KeysNotLoaded, Unauthorized, UnknownKey
from api_gateway.keys import KeySet, pem_keys, public_key, secret_key
from api_gateway.tokens import TokenVerifier, configured_keys

SECRET = "s" * 48
ISSUER = "tickettoken-api"
ALL = ("HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA")
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key: Any) -> str:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


def config(**changes: Any) -> JwtConfig:
    base = JwtConfig(
        access_secret=SECRET,
        refresh_secret=SECRET,
        issuer=ISSUER,
        access_ttl_s=900,
        refresh_ttl_s=900,
        leeway_s=0,
        cache_size=100,
    )
    return replace(base, **changes)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u-1", "tenant_id": "t-1", "iss": ISSUER, "exp": now + 600, **extra}


def test_each_key_type_checks_only_its_family() -> None:
    assert public_key(RSA_KEY.public_key(), ALL).algorithms == {"RS256", "PS256"}
    assert public_key(EC_KEY.public_key(), ALL).algorithms == {"ES256"}
    assert public_key(ED_KEY.public_key(), ALL).algorithms == {"EdDSA"}
    secret = secret_key(SECRET.encode(), ALL)
    assert secret is not None and secret.algorithms == {"HS256"}


@pytest.mark.parametrize("length", [0, 1, 32, 48, 64, 65, 128, 129, 300])
def test_an_hmac_secret_checks_what_hmac_digest_signs_at_any_length(length: int) -> None:
    secret = bytes(i % 256 for i in range(length))
    key = secret_key(secret, ("HS256", "HS384", "HS512"))
    assert key is not None
    for message in (b"", b"a.b", b"x" * 64, b"y" * 300):
        for algorithm, name in (("HS256", "sha256"), ("HS384", "sha384"), ("HS512", "sha512")):
            signature = hmac.digest(secret, message, name)
            assert key.verify(algorithm, message, signature)
            assert not key.verify(algorithm, message + b".", signature)
            assert not key.verify(algorithm, message, signature[:-1])


def test_a_key_is_narrowed_to_what_is_allowed_and_to_its_own_alg() -> None:
    key = public_key(RSA_KEY.public_key(), ("RS256", "PS256"), kid="a", alg="PS256")
    assert key.algorithms == {"PS256"}
    with pytest.raises(ValueError, match="does not fit"):
        public_key(RSA_KEY.public_key(), ALL, alg="ES256")
    with pytest.raises(ValueError, match="none of the allowed"):
        public_key(EC_KEY.public_key(), ("RS256",))
    assert secret_key(SECRET.encode(), ("RS256",)) is None


def test_weak_and_unknown_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        public_key(small.public_key(), ALL)
    with pytest.raises(ValueError, match="unsupported curve"):
        public_key(ec.generate_private_key(ec.SECP256K1()).public_key(), ALL)
    with pytest.raises(ValueError, match="not a public key"):
        public_key(b"bytes", ALL)


def test_pem_text_gives_keys_and_refuses_private_keys() -> None:
    keys = pem_keys(pem(RSA_KEY) + pem(EC_KEY), ALL)
    assert [k.algorithms for k in keys] == [{"RS256", "PS256"}, {"ES256"}]
    private = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="private key"):
        pem_keys(private, ALL)
    with pytest.raises(ValueError, match="no PEM"):
        pem_keys("not pem", ALL)


def test_kid_selects_and_the_algorithm_must_fit_the_selected_key() -> None:
    a = public_key(RSA_KEY.public_key(), ALL, kid="a")
    b = public_key(EC_KEY.public_key(), ALL, kid="b")
    keys = KeySet([a, b])
    assert keys.select("RS256", "a") is a
    assert keys.select("ES256", "b") is b
    with pytest.raises(Unauthorized, match="does not fit"):
        keys.select("ES256", "a")
    with pytest.raises(UnknownKey) as unknown:
        keys.select("RS256", "c")
    assert unknown.value.kid == "c"


def test_without_kid_one_fitting_key_is_used_and_several_are_refused() -> None:
    a = public_key(RSA_KEY.public_key(), ALL, kid="a")
    b = public_key(rsa.generate_private_key(65537, 2048).public_key(), ALL, kid="b")
    assert KeySet([a]).select("RS256", None) is a
    with pytest.raises(Unauthorized, match="several"):
        KeySet([a, b]).select("RS256", None)
    with pytest.raises(Unauthorized, match="no key"):
        KeySet([a]).select("ES256", None)


def test_a_configured_key_without_kid_answers_any_kid_of_its_family() -> None:
    configured = public_key(RSA_KEY.public_key(), ALL)
    assert KeySet([configured]).select("RS256", "whatever-the-issuer-writes") is configured


def test_removal_is_told_apart_from_addition() -> None:
    a = public_key(RSA_KEY.public_key(), ALL, kid="a")
    b = public_key(EC_KEY.public_key(), ALL, kid="b")
    assert not KeySet([a, b]).removed_from(KeySet([a]))
    assert KeySet([b]).removed_from(KeySet([a, b]))


@pytest.mark.parametrize(
    ("algorithm", "private"),
    [("RS256", RSA_KEY), ("PS256", RSA_KEY), ("ES256", EC_KEY), ("EdDSA", ED_KEY)],
)
def test_asymmetric_tokens_verify_against_a_pem_key(algorithm: str, private: Any) -> None:
    verifier = TokenVerifier(config(algorithms=ALL, public_key=pem(private)))
    token = jwt.encode(claims(aud="tickettoken"), private, algorithm=algorithm)
    assert verifier.verify(token).user_id == "u-1"


def hmac_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    def segment(part: bytes) -> str:
        return base64.urlsafe_b64encode(part).rstrip(b"=").decode()

    signing_input = (
        f"{segment(json.dumps(header).encode())}.{segment(json.dumps(payload).encode())}"
    )
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(digest)}"


@pytest.mark.parametrize("kid", [None, "a"])
def test_the_public_key_used_as_an_hmac_secret_is_refused(kid: str | None) -> None:
    """The algorithm confusion attack: the attacker knows the public key and signs HS256 with
    its PEM text. The HMAC key is the configured secret alone, whatever a token says."""
    public_pem = pem(RSA_KEY)
    verifier = TokenVerifier(config(algorithms=("HS256", "RS256"), public_key=public_pem))
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    for key in (public_pem.encode(), public_pem.strip().encode()):
        with pytest.raises(Unauthorized, match="invalid"):
            verifier.verify(hmac_signed(header, claims(), key))
    # and the same token with the real secret passes: the refusal is the key, not the shape
    assert verifier.verify(hmac_signed(header, claims(), SECRET.encode())).user_id == "u-1"


@pytest.mark.parametrize("algorithm", ["none", "HS512", "RS512", "ES256K", "XYZ", ""])
def test_algorithms_outside_the_allowlist_are_refused(algorithm: str) -> None:
    verifier = TokenVerifier(config(algorithms=("HS256",)))
    token = jwt.encode(claims(), SECRET, algorithm="HS512" if algorithm == "HS512" else "HS256")
    header = jwt.utils.base64url_encode(f'{{"alg":"{algorithm}"}}'.encode()).decode()
    with pytest.raises(Unauthorized, match="algorithm"):
        verifier.verify(header + token[token.index(".") :])


def test_a_token_of_the_wrong_key_type_is_refused() -> None:
    verifier = TokenVerifier(config(algorithms=("RS256", "ES256"), public_key=pem(RSA_KEY)))
    token = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    with pytest.raises(Unauthorized, match="no key"):
        verifier.verify(token)


def test_no_key_set_loaded_is_a_503_not_a_401() -> None:
    class Nothing:  # a KeySource that never loaded a set (a JWKS unreachable since start-up)
        keys: KeySet | None = None

        def refresh_unknown(self, kid: str) -> None:
            return None

        def problem(self) -> str:
            return "not loaded"

    verifier = TokenVerifier(config(algorithms=("RS256",), public_key=pem(RSA_KEY)), keys=Nothing())
    with pytest.raises(KeysNotLoaded):
        verifier.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256"))


def test_forget_all_empties_the_cache() -> None:
    verifier = TokenVerifier(config())
    verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert verifier.cache and verifier.cached_bytes
    verifier.forget_all()
    assert not verifier.cache and verifier.cached_bytes == 0


def test_the_configured_keys_are_the_secret_and_the_pem_keys() -> None:
    keys = configured_keys(config(algorithms=("HS256", "ES256"), public_key=pem(EC_KEY)))
    assert [k.algorithms for k in keys] == [{"HS256"}, {"ES256"}]
    assert configured_keys(config(algorithms=("ES256",), public_key=pem(EC_KEY)))[0].kid is None
