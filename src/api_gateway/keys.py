"""Verification keys: which key may check which algorithm, decided by the key's own type.

A key is built for one family (an HMAC secret, an RSA key, an EC key of one curve, an EdDSA
key) and checks only that family's algorithms. A token's ``alg`` selects among the keys that may
check it, never the other way round, so an HMAC check keyed with a public key (the algorithm
confusion attack) cannot be expressed. Keys come from the configured secret, from PEM
(``JWT_PUBLIC_KEY``) or from a JWKS document (``jwks.py``); all become ``VerificationKey``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import algorithms as jwa

from api_gateway.errors import Unauthorized, UnknownKey

HMAC: Final = frozenset({"HS256", "HS384", "HS512"})
# An HMAC check (RFC 2104) starts from the hash states of the key's inner and outer pads,
# worked out once per key: per token, two copies, two updates and a constant-time comparison.
# ``hmac.digest`` derives the pads again and fetches OpenSSL's MAC for every call: about 10k
# instructions of a token miss's 27k HMAC.
HMAC_DIGESTS: Final[Mapping[str, str]] = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
INNER_PAD: Final = bytes([byte ^ 0x36 for byte in range(256)])
OUTER_PAD: Final = bytes([byte ^ 0x5C for byte in range(256)])
RSA: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# An EC key checks the one algorithm of its curve (RFC 7518 §3.4).
EC_CURVES: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
EDDSA: Final = frozenset({"EdDSA"})
SUPPORTED: Final = HMAC | RSA | frozenset(EC_CURVES.values()) | EDDSA
# Smaller RSA moduli are factorable by a determined attacker (NIST SP 800-131A).
MIN_RSA_BITS: Final = 2048
# PyJWT's algorithm objects: only their verify(), with keys prepared here.
VERIFIERS: Final[Mapping[str, Any]] = jwa.get_default_algorithms()

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


class Digest(Protocol):
    """A hash state of ``hashlib`` (its type is private)."""

    def copy(self) -> Digest: ...

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


def hmac_pads(secret: bytes, algorithm: str) -> tuple[Digest, Digest]:
    """The hash states after the inner and the outer pad of ``secret`` (RFC 2104 §2)."""
    name = HMAC_DIGESTS[algorithm]
    block = hashlib.new(name).block_size
    if len(secret) > block:
        secret = hashlib.new(name, secret).digest()
    secret = secret.ljust(block, b"\0")
    return hashlib.new(name, secret.translate(INNER_PAD)), hashlib.new(
        name, secret.translate(OUTER_PAD)
    )


def hmac_of(pads: tuple[Digest, Digest], message: bytes) -> bytes:
    """HMAC of ``message`` from a key's ``hmac_pads``: ``hmac.digest``'s answer."""
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str | None
    algorithms: frozenset[str]  # what this key may check: its family's, narrowed by config
    key: bytes | PublicKey
    fingerprint: bytes  # the key itself, hashed: two sets are compared by these
    # An HMAC secret's pads, per algorithm it may check (``secret_key``).
    pads: Mapping[str, tuple[Digest, Digest]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def verify(self, algorithm: str, signing_input: bytes, signature: bytes) -> bool:
        key = self.key
        if isinstance(key, bytes):  # an HMAC secret: only HMAC algorithms select it
            digest = hmac_of(self.pads[algorithm], signing_input)
            return hmac.compare_digest(digest, signature)
        verified: bool = VERIFIERS[algorithm].verify(signing_input, key, signature)
        return verified


def secret_key(secret: bytes, allowed: Iterable[str]) -> VerificationKey | None:
    """The configured shared secret, for the HMAC algorithms allowed (None: none is)."""
    algorithms = HMAC.intersection(allowed)
    if not algorithms:
        return None
    pads = {algorithm: hmac_pads(secret, algorithm) for algorithm in algorithms}
    fingerprint = b"oct:" + hashlib.sha256(secret).digest()
    return VerificationKey(None, algorithms, secret, fingerprint, pads)


def public_key(
    key: object, allowed: Iterable[str], kid: str | None = None, alg: str | None = None
) -> VerificationKey:
    """A public key for the algorithms its type permits, among those allowed (and ``alg``'s
    alone when the key names one). ``ValueError`` says why a key is unusable."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
        family: frozenset[str] = RSA
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = EC_CURVES.get(key.curve.name)
        if curve is None:
            raise ValueError(f"an EC key on the unsupported curve {key.curve.name}")
        family = frozenset({curve})
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        family = EDDSA
    else:
        raise ValueError(f"not a public key the gateway can verify with ({type(key).__name__})")
    algorithms = family.intersection(allowed)
    if alg is not None:
        if alg not in family:
            raise ValueError(f"the key's 'alg' {alg} does not fit its type")
        algorithms = algorithms.intersection({alg})
    if not algorithms:
        raise ValueError("the key fits none of the allowed algorithms (jwt.algorithms)")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return VerificationKey(kid, algorithms, key, hashlib.sha256(der).digest())


def pem_keys(text: str, allowed: Iterable[str]) -> list[VerificationKey]:
    """Every PUBLIC KEY or CERTIFICATE block of a PEM text, as keys without a ``kid``."""
    allowed = frozenset(allowed)
    keys = []
    for block in pem_blocks(text):
        data = block.encode("ascii")
        if "CERTIFICATE" in block.split("\n", 1)[0]:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        elif "PRIVATE" in block.split("\n", 1)[0]:
            raise ValueError("holds a private key: give the gateway the public key alone")
        else:
            key = serialization.load_pem_public_key(data)
        keys.append(public_key(key, allowed))
    if not keys:
        raise ValueError("holds no PEM public key or certificate")
    return keys


def pem_blocks(text: str) -> list[str]:
    blocks, current = [], list[str]()
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN "):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith("-----END "):
                blocks.append("\n".join(current) + "\n")
                current = []
    return blocks


class KeySet:
    """The keys tokens may be signed with, as loaded at one moment. Immutable: a refresh builds
    a new set and swaps it in whole."""

    __slots__ = ("by_algorithm", "by_kid", "fingerprints", "keys")

    def __init__(self, keys: Sequence[VerificationKey]) -> None:
        self.keys = tuple(keys)
        self.by_kid = {key.kid: key for key in self.keys if key.kid is not None}
        # Per algorithm, the keys without a kid (the configured secret and PEM keys) and all.
        self.by_algorithm: dict[str, tuple[VerificationKey, ...]] = {}
        for algorithm in SUPPORTED:
            fitting = tuple(key for key in self.keys if algorithm in key.algorithms)
            if fitting:
                self.by_algorithm[algorithm] = fitting
        self.fingerprints = frozenset((key.kid, key.fingerprint) for key in self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, algorithm: str, kid: str | None) -> VerificationKey:
        """The one key that may check a token of ``algorithm`` naming ``kid``, or 401."""
        if kid is not None:
            key = self.by_kid.get(kid)
            if key is not None:
                if algorithm not in key.algorithms:
                    raise Unauthorized("the access token's algorithm does not fit its key")
                return key
        fitting = self.by_algorithm.get(algorithm, ())
        if kid is None:
            if len(fitting) == 1:
                return fitting[0]
        else:
            unnamed = [key for key in fitting if key.kid is None]
            if len(unnamed) == 1:
                return unnamed[0]  # a configured key answers whatever kid the issuer writes
            raise UnknownKey(kid)
        if not fitting:
            raise Unauthorized(f"no key of the gateway checks {algorithm} tokens")
        raise Unauthorized("the access token names no key ('kid') and several could check it")

    def removed_from(self, older: KeySet) -> bool:
        """Whether a key of ``older`` is missing here (a revocation, not only an addition)."""
        return not older.fingerprints <= self.fingerprints
