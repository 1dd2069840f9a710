"""Real signing keys for tests: RSA, EC P-256 and Ed25519 made with ``cryptography``, tokens
signed with PyJWT, and the public halves rendered as JWKs (RFC 7517) or PEM.

Key generation costs milliseconds (RSA tens of them): ``rsa_key()`` and friends make a fresh key
per call, ``shared_rsa_key()`` and friends one per process, for tests that only need *a* key.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from support.tokens import claims as token_claims

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@functools.cache
def shared_rsa_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@functools.cache
def shared_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec_key()


@functools.cache
def shared_ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519_key()


def public(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half (a public key is returned as it is)."""
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    return key


def default_alg(key: PrivateKey | PublicKey) -> str:
    """The algorithm a key of this type usually signs with: RS256, ES256/384/512, EdDSA."""
    key = public(key)
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    return "EdDSA"


def jwk(
    key: PrivateKey | PublicKey,
    kid: str | None,
    alg: str | None = None,
    use: str | None = "sig",
    private: bool = False,
) -> dict[str, Any]:
    """The JWK of ``key``'s public half (with ``private=True``, of the private key itself, to
    test that a JWKS publishing one is refused). ``alg`` and ``use`` are written when given."""
    source: Any = key if private else public(key)
    if isinstance(source, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        text = RSAAlgorithm.to_jwk(source)
    elif isinstance(source, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        text = ECAlgorithm.to_jwk(source)
    else:
        text = OKPAlgorithm.to_jwk(source)
    document: dict[str, Any] = json.loads(text) if isinstance(text, str) else dict(text)
    if kid is not None:
        document["kid"] = kid
    if alg is not None:
        document["alg"] = alg
    if use is not None:
        document["use"] = use
    return document


def jwks(*entries: dict[str, Any]) -> dict[str, Any]:
    """A JWKS document of the given JWKs."""
    return {"keys": list(entries)}


def sign(
    private_key: PrivateKey,
    alg: str | None = None,
    claims: dict[str, Any] | None = None,
    kid: str | None = None,
    **claim_overrides: Any,
) -> str:
    """A token signed with ``private_key`` (``alg`` defaults to the key type's usual one);
    ``claims`` default to ``support.tokens.claims(**claim_overrides)``."""
    payload = claims if claims is not None else token_claims(**claim_overrides)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(
        payload, private_key, algorithm=alg or default_alg(private_key), headers=headers
    )


def pem(key: PrivateKey | PublicKey) -> str:
    """The PEM (SubjectPublicKeyInfo) of ``key``'s public half."""
    return (
        public(key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
