"""Edge authentication as the platform's real clients present it: asymmetric tokens checked
against a PEM key, an audience, camelCase claims, and the browser's cookie and query-parameter
credentials. The gateway runs with ``JWT_ALGORITHMS``, ``JWT_PUBLIC_KEY_FILE`` and
``JWT_AUDIENCE`` set, as an operator would set them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support.assertions import assert_nothing_reached, assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import ISSUER, JWT_SECRET

AUDIENCE = "tickettoken-gateway"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PRIVATE: dict[str, PrivateKey] = {
    "RS256": RSA_KEY,
    "PS256": RSA_KEY,
    "ES256": EC_KEY,
    "EdDSA": ED_KEY,
}
TARGET = "/api/v1/events/42"


def pem(key: Any) -> str:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


PUBLIC_PEM = pem(RSA_KEY) + pem(EC_KEY) + pem(ED_KEY)


@pytest.fixture(scope="module")
def gateway_extra_env(module_dir: Path) -> dict[str, str]:
    key_file = module_dir / "issuer-public.pem"
    key_file.write_text(PUBLIC_PEM)
    return {
        "JWT_ALGORITHMS": "HS256,RS256,PS256,ES256,EdDSA",
        "JWT_PUBLIC_KEY_FILE": str(key_file),
        "JWT_AUDIENCE": f"{AUDIENCE},another-audience",
    }


def token_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    document: dict[str, Any] = {
        "sub": "user-7",
        "tenant_id": "tenant-7",
        "role": "customer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    document.update(changes)
    return {name: value for name, value in document.items() if value is not None}


def signed(algorithm: str = "RS256", **changes: Any) -> str:
    key = JWT_SECRET if algorithm == "HS256" else PRIVATE[algorithm]
    return jwt.encode(token_claims(**changes), key, algorithm=algorithm)


def hs256_with(key: bytes, claims: dict[str, Any]) -> str:
    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = segment(b'{"alg":"HS256","typ":"JWT"}') + "." + segment(json.dumps(claims).encode())
    return head + "." + segment(hmac.new(key, head.encode(), hashlib.sha256).digest())


def assert_refused(gateway: GatewayProcess, services: Fleet, token: str) -> None:
    assert_problem(gateway.get(TARGET, token=token), 401)
    assert_nothing_reached(services)


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "EdDSA", "HS256"])
def test_tokens_of_every_allowed_algorithm_reach_the_service(
    gateway: GatewayProcess, services: Fleet, algorithm: str
) -> None:
    response = gateway.get(TARGET, token=signed(algorithm))

    assert response.status == 200, response.body
    seen = services["event"].only_request()
    assert seen.header_values("x-user-id") == ["user-7"]
    assert seen.header_values("x-tenant-id") == ["tenant-7"]
    assert seen.header_values("x-auth-method") == ["jwt"]


def test_the_public_key_as_an_hmac_secret_is_refused(
    gateway: GatewayProcess, services: Fleet
) -> None:
    for key in (PUBLIC_PEM, pem(RSA_KEY), pem(RSA_KEY).strip()):
        assert_refused(gateway, services, hs256_with(key.encode(), token_claims()))
    # the same forgery with the real secret is accepted: the key, not the shape, is refused
    assert gateway.get(TARGET, token=hs256_with(JWT_SECRET.encode(), token_claims())).status == 200


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: signed(aud=None), id="no-audience"),
        pytest.param(lambda: signed(aud="billing-service"), id="other-audience"),
        pytest.param(lambda: signed(aud=["billing", "orders"]), id="other-audiences"),
        pytest.param(lambda: signed(userId="someone-else"), id="user-claims-disagree"),
        pytest.param(lambda: signed(tenantId="tenant-8"), id="tenant-claims-disagree"),
        pytest.param(lambda: signed("RS256", kid="unknown-kid", iss="other"), id="issuer"),
        pytest.param(
            # PyJWT takes no key for "none"; its annotations do not say so.
            lambda: jwt.encode(token_claims(), None, algorithm="none"),  # type: ignore[arg-type]
            id="algorithm-none",
        ),
        pytest.param(
            lambda: jwt.encode(token_claims(), RSA_KEY, algorithm="RS512"), id="not-allowed"
        ),
        pytest.param(
            lambda: jwt.encode(
                token_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
            ),
            id="another-ec-key",
        ),
    ],
)
def test_tokens_the_gateway_must_refuse(
    gateway: GatewayProcess, services: Fleet, token: Any
) -> None:
    assert_refused(gateway, services, token())


def test_an_audience_list_holding_one_of_ours_is_accepted(gateway: GatewayProcess) -> None:
    token = signed(aud=["billing", "another-audience"])
    assert gateway.get(TARGET, token=token).status == 200


def test_camel_case_claims_as_auth_service_writes_them(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = signed("ES256", sub=None, tenant_id=None, userId="user-9", tenantId="tenant-9")

    assert gateway.get(TARGET, token=token).status == 200
    seen = services["event"].only_request()
    assert seen.header_values("x-user-id") == ["user-9"]
    assert seen.header_values("x-tenant-id") == ["tenant-9"]


# --- browser credentials --------------------------------------------------------------------


def test_a_token_cookie_authenticates_and_stays_at_the_gateway(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = signed("EdDSA")
    cookie = f"theme=dark; access_token={token}; lang=en"

    response = gateway.get(TARGET, headers={"Cookie": cookie})

    assert response.status == 200, response.body
    seen = services["event"].only_request()
    assert seen.header_values("x-user-id") == ["user-7"]
    assert seen.header_values("cookie") == ["theme=dark; lang=en"]
    assert token not in gateway.output()


def test_a_cookie_holding_only_the_token_is_not_forwarded_at_all(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get(TARGET, headers={"Cookie": f"access_token={signed()}"})

    assert response.status == 200, response.body
    assert services["event"].only_request().header_values("cookie") == []


def test_authorization_wins_over_the_cookie(gateway: GatewayProcess, services: Fleet) -> None:
    cookie = "access_token=" + signed(sub="cookie-user")

    response = gateway.get(TARGET, token=signed(sub="header-user"), headers={"Cookie": cookie})

    assert response.status == 200
    assert services["event"].only_request().header_values("x-user-id") == ["header-user"]


def test_an_invalid_cookie_token_is_a_401(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get(TARGET, headers={"Cookie": "access_token=" + signed(aud="billing")})
    assert_problem(response, 401)
    assert_nothing_reached(services)


def test_an_event_stream_may_carry_its_token_in_the_query(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = signed("ES256")
    target = f"/api/v1/events/live?venue=3&access_token={token}&since=9"

    response = gateway.get(target, headers={"Accept": "text/event-stream"})

    assert response.status == 200, response.body
    seen = services["event"].only_request()
    assert seen.target == "/api/v1/events/live?venue=3&since=9"
    assert seen.header_values("x-user-id") == ["user-7"]
    assert token not in gateway.output()


def test_a_query_token_is_refused_outside_event_streams_and_never_forwarded(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = signed()
    response = gateway.get(f"{TARGET}?access_token={token}")
    assert_problem(response, 401)
    assert_nothing_reached(services)
    # with a header token the request passes, and the query's copy is still removed
    response = gateway.get(f"{TARGET}?access_token={token}&x=1", token=token)
    assert response.status == 200
    assert services["event"].only_request().target == f"{TARGET}?x=1"


def test_a_query_token_on_a_public_path_goes_no_further(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get(f"/api/v1/events/health?access_token={signed()}")

    assert response.status == 200
    assert services["event"].only_request().target == "/api/v1/events/health"
