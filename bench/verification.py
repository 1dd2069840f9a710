"""CPU per access-token verification (a verified-token cache miss), by algorithm.

    .venv/bin/python bench/verification.py [--tokens 2000]

Each token is new (its own ``jti``) and the verifier's cache is off, so every call verifies: the
figure is what a miss costs on top of a cached token, per request. A hit costs the same for
every algorithm (one dictionary lookup). Uses the compiled build when it is fresh.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from api_gateway import compiled
from api_gateway.config.settings import JwtConfig
from api_gateway.tokens import TokenVerifier

SECRET = "bench-secret-" + "x" * 40
ISSUER = "tickettoken-api"


def public_pem(key: Any) -> str:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    count = parser.parse_args().tokens
    keys: dict[str, Any] = {
        "HS256": SECRET,
        "RS256": rsa.generate_private_key(65537, 2048),
        "PS256": None,
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    keys["PS256"] = keys["RS256"]
    pems = "".join(public_pem(keys[a]) for a in ("RS256", "ES256", "EdDSA"))
    config = JwtConfig(
        access_secret=SECRET,
        refresh_secret=SECRET,
        issuer=ISSUER,
        access_ttl_s=60,
        refresh_ttl_s=60,
        leeway_s=0,
        cache_size=0,
        algorithms=tuple(keys),
        public_key=pems,
    )
    verifier = TokenVerifier(config)
    print(f"compiled build: {compiled.ACTIVE}")
    claims = {"sub": "u-1", "tenant_id": "t-1", "iss": ISSUER, "exp": int(time.time()) + 3600}
    for algorithm, key in keys.items():
        tokens = [
            jwt.encode({**claims, "jti": str(n)}, key, algorithm=algorithm) for n in range(count)
        ]
        started = time.process_time()
        for token in tokens:
            verifier.verify(token)
        per_miss = (time.process_time() - started) / count * 1e6
        print(f"{algorithm:6} {per_miss:7.1f} µs CPU per verification")


if __name__ == "__main__":
    main()
