"""Hostile tokens: every one is forged by hand (base64url segments and an HMAC), so each attack is
exactly the bytes it names. Each is refused by ``TokenVerifier`` on an injected clock, and by the
running gateway with a 401 problem while no upstream hears of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import ISSUER, JWT_SECRET, OTHER_SECRET

from api_gateway.config.settings import JwtConfig
from api_gateway.errors import Unauthorized
from api_gateway.tokens import TokenVerifier

LEEWAY_S = 60  # the default `jwt.leeway_s`, which the gateway under test runs with
NOW = 1_700_000_000  # the unit tests' injected clock
HS256 = {"alg": "HS256", "typ": "JWT"}
TARGET = "/api/v1/tickets/1"

Forge = Callable[[int], str]


# -- forging ------------------------------------------------------------------------------------


def segment(part: object) -> str:
    """base64url without padding of ``part``: bytes as they are, str as UTF-8, else as JSON."""
    if isinstance(part, bytes):
        raw = part
    elif isinstance(part, str):
        raw = part.encode()
    else:
        raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mac(signing_input: str, secret: str = JWT_SECRET, digest: Any = hashlib.sha256) -> str:
    return segment(hmac.new(secret.encode(), signing_input.encode(), digest).digest())


def forge(
    payload: object, header: object = HS256, secret: str = JWT_SECRET, digest: Any = hashlib.sha256
) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{mac(signing_input, secret, digest)}"


def claims(now: int, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "tenant-1",
        "role": "customer",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
        "type": "access",
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not None}


def raw_claims(now: int, extra: str) -> str:
    """The claims as JSON text with ``extra`` members appended verbatim (for what JSON allows
    to be written but ``json.dumps`` would not write: repeated names, NaN)."""
    return json.dumps(claims(now))[:-1] + ", " + extra + "}"


def respliced(token: str, change: Callable[[list[str]], list[str]]) -> str:
    return ".".join(change(token.split(".")))


def good(now: int) -> str:
    return forge(claims(now))


def standard_alphabet_signature(now: int) -> str:
    """A good token whose signature is spelled with ``+`` and ``/``, which a decoder that takes
    both alphabets reads as the same bytes."""
    for attempt in range(100):
        header, payload, signature = forge(claims(now, jti=str(attempt))).split(".")
        if "-" in signature or "_" in signature:
            standard = signature.replace("-", "+").replace("_", "/")
            return f"{header}.{payload}.{standard}"
    raise AssertionError("no signature with '-' or '_' in 100 attempts")


def alg(name: object) -> Forge:
    return lambda now: forge(claims(now), header={"alg": name, "typ": "JWT"})


def signed_with_header(**extra: Any) -> Forge:
    """Our secret, our algorithm, and header members that must change nothing."""
    return lambda now: forge(claims(now), header={**HS256, **extra})


ATTACKER_KEY = "attacker-controlled-key-" + "a" * 40
ATTACKER_JWK = {"kty": "oct", "k": segment(ATTACKER_KEY)}


def attacker_signed(**extra: Any) -> Forge:
    """Signed with the attacker's key, which the header points at or carries."""
    return lambda now: forge(
        claims(now, role="admin"), header={**HS256, **extra}, secret=ATTACKER_KEY
    )


# -- the table ----------------------------------------------------------------------------------

REFUSED = [
    # `alg: none`, in every spelling, with and without a signature
    pytest.param(lambda now: f"{segment({'alg': 'none'})}.{segment(claims(now))}.", id="none"),
    pytest.param(lambda now: f"{segment({'alg': 'none'})}.{segment(claims(now))}", id="none-2seg"),
    pytest.param(lambda now: f"{segment({'alg': 'None'})}.{segment(claims(now))}.", id="None"),
    pytest.param(lambda now: f"{segment({'alg': 'NONE'})}.{segment(claims(now))}.", id="NONE"),
    pytest.param(lambda now: f"{segment({'alg': 'nOnE'})}.{segment(claims(now))}.", id="nOnE"),
    pytest.param(alg("none"), id="none-with-a-valid-hmac"),
    pytest.param(alg(""), id="alg-empty"),
    pytest.param(alg(None), id="alg-null"),
    pytest.param(alg(["HS256"]), id="alg-list"),
    pytest.param(alg("hs256"), id="alg-lower-case"),
    pytest.param(lambda now: forge(claims(now), header={"typ": "JWT"}), id="alg-missing"),
    # another algorithm: HS/RS confusion (the HMAC key as an "RSA public key"), other HMACs
    pytest.param(alg("RS256"), id="rs256-signed-with-hmac"),
    pytest.param(alg("ES256"), id="es256-signed-with-hmac"),
    pytest.param(alg("PS256"), id="ps256-signed-with-hmac"),
    pytest.param(alg("EdDSA"), id="eddsa-signed-with-hmac"),
    pytest.param(
        lambda now: f"{segment({'alg': 'RS256'})}.{segment(claims(now))}.{segment(b'x' * 256)}",
        id="rs256-random-signature",
    ),
    pytest.param(
        lambda now: forge(claims(now), {"alg": "HS384"}, digest=hashlib.sha384), id="hs384"
    ),
    pytest.param(
        lambda now: forge(claims(now), {"alg": "HS512"}, digest=hashlib.sha512), id="hs512"
    ),
    pytest.param(lambda now: forge(claims(now), secret=OTHER_SECRET), id="other-secret"),
    # tampering and stripping
    pytest.param(
        lambda now: respliced(
            good(now), lambda p: [p[0], segment(claims(now, role="admin")), p[2]]
        ),
        id="tampered-payload-role",
    ),
    pytest.param(
        lambda now: respliced(
            good(now), lambda p: [p[0], segment(claims(now, tenant_id="tenant-2")), p[2]]
        ),
        id="tampered-payload-tenant",
    ),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [segment({"alg": "none"}), p[1], p[2]]),
        id="tampered-header",
    ),
    pytest.param(lambda now: respliced(good(now), lambda p: [p[0], p[1], ""]), id="no-signature"),
    pytest.param(lambda now: respliced(good(now), lambda p: p[:2]), id="signature-stripped"),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [p[0], p[1], p[2][:-4]]), id="signature-cut"
    ),
    # segment count
    pytest.param(lambda now: "", id="empty"),
    pytest.param(lambda now: segment(claims(now)), id="one-segment"),
    pytest.param(lambda now: respliced(good(now), lambda p: [*p, p[2]]), id="four-segments"),
    pytest.param(lambda now: respliced(good(now), lambda p: [p[0], *p]), id="four-segments-head"),
    pytest.param(lambda now: good(now) + "..", id="five-segments"),
    pytest.param(lambda now: ".." + good(now), id="leading-dots"),
    # base64: only unpadded base64url is a token
    pytest.param(lambda now: good(now) + "=", id="padded-signature"),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [p[0] + "=", p[1], p[2]]), id="padded-header"
    ),
    pytest.param(standard_alphabet_signature, id="standard-alphabet-signature"),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [p[0], "!!!!" + p[1], p[2]]), id="bang"
    ),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [p[0], p[1], "    " + p[2]]), id="spaces"
    ),
    pytest.param(
        lambda now: respliced(good(now), lambda p: [p[0], p[1] + "A", p[2]]), id="bad-length"
    ),
    # payloads that are not one JSON object, or that parsers could read differently
    pytest.param(lambda now: forge([claims(now)]), id="payload-array"),
    pytest.param(lambda now: forge("a string"), id="payload-bare-word"),
    pytest.param(lambda now: forge('"a string"'), id="payload-json-string"),
    pytest.param(lambda now: forge("42"), id="payload-number"),
    pytest.param(lambda now: forge("null"), id="payload-null"),
    pytest.param(lambda now: forge(b"\xff\xfe{}"), id="payload-not-utf8"),
    pytest.param(lambda now: forge(json.dumps(claims(now))[:-1]), id="payload-truncated"),
    pytest.param(lambda now: forge(claims(now), header=[HS256]), id="header-array"),
    pytest.param(
        lambda now: forge(raw_claims(now, '"tenant_id": "tenant-2"')), id="duplicate-tenant"
    ),
    pytest.param(lambda now: forge(raw_claims(now, '"sub": "admin"')), id="duplicate-sub"),
    pytest.param(lambda now: forge(raw_claims(now, f'"exp": {now + 10**9}')), id="duplicate-exp"),
    pytest.param(lambda now: forge(raw_claims(now, '"type": "refresh"')), id="duplicate-type"),
    # times
    pytest.param(lambda now: forge(claims(now, exp=now - LEEWAY_S - 5)), id="expired-past-leeway"),
    pytest.param(lambda now: forge(claims(now, nbf=now + LEEWAY_S + 5)), id="nbf-past-leeway"),
    pytest.param(lambda now: forge(claims(now, exp=None)), id="exp-missing"),
    pytest.param(lambda now: forge(claims(now, exp=(now + 600) * 1000)), id="exp-in-ms"),
    pytest.param(lambda now: forge(claims(now, exp=str(now + 600))), id="exp-string"),
    pytest.param(lambda now: forge(claims(now, exp=True)), id="exp-true"),
    pytest.param(lambda now: forge(claims(now, exp=[now + 600])), id="exp-list"),
    pytest.param(lambda now: forge(claims(now, nbf=str(now))), id="nbf-string"),
    pytest.param(lambda now: forge(claims(now, exp=10**400)), id="exp-huge-int"),
    pytest.param(lambda now: forge(json.dumps(claims(now, exp=1e400))), id="exp-overflows-float"),
    pytest.param(lambda now: forge(claims(now, exp=float("nan"))), id="exp-NaN"),
    pytest.param(lambda now: forge(claims(now, exp=float("inf"))), id="exp-Infinity"),
    pytest.param(lambda now: forge(claims(now, nbf=float("-inf"))), id="nbf-minus-Infinity"),
    # who issued it, and for what
    pytest.param(lambda now: forge(claims(now, iss="someone-else")), id="wrong-issuer"),
    pytest.param(lambda now: forge(claims(now, iss=ISSUER.upper())), id="issuer-other-case"),
    pytest.param(lambda now: forge(claims(now, iss=[ISSUER])), id="issuer-list"),
    pytest.param(lambda now: forge(claims(now, iss=None)), id="issuer-missing"),
    pytest.param(lambda now: forge(claims(now, type="refresh")), id="refresh-token"),
    pytest.param(signed_with_header(crit=["exp-ms"], **{"exp-ms": True}), id="crit-extension"),
    # key-selecting headers point at the attacker's key: they are never followed
    pytest.param(attacker_signed(jwk=ATTACKER_JWK), id="jwk-embedded"),
    pytest.param(attacker_signed(jku="https://evil.example/jwks.json"), id="jku"),
    pytest.param(attacker_signed(x5u="https://evil.example/cert.pem"), id="x5u"),
    pytest.param(attacker_signed(kid="attacker"), id="kid"),
    pytest.param(
        lambda now: forge(claims(now), {**HS256, "kid": "../../../../dev/null"}, secret=""),
        id="kid-path-to-empty-key",
    ),
    pytest.param(attacker_signed(kid="x' UNION SELECT 'attacker"), id="kid-sql"),
]

# Header members that name keys or certificates are ignored: the gateway's secret decides.
IGNORED_HEADERS = [
    pytest.param(signed_with_header(kid="some-key-id"), id="kid"),
    pytest.param(signed_with_header(jku="https://evil.example/jwks.json"), id="jku"),
    pytest.param(signed_with_header(x5u="https://evil.example/cert.pem"), id="x5u"),
    pytest.param(signed_with_header(jwk=ATTACKER_JWK), id="jwk"),
    pytest.param(signed_with_header(x5c=["MIIB"]), id="x5c"),
    pytest.param(signed_with_header(typ="at+jwt", cty="JWT"), id="typ-cty"),
]

# (exp or nbf offset from now, valid): the leeway is inclusive.
LEEWAY_EDGES = [
    pytest.param({"exp": -LEEWAY_S}, True, id="expired-exactly-leeway"),
    pytest.param({"exp": -LEEWAY_S - 1}, False, id="expired-leeway-plus-1s"),
    pytest.param({"exp": -LEEWAY_S - 0.001}, False, id="expired-leeway-plus-1ms"),
    pytest.param({"nbf": LEEWAY_S}, True, id="nbf-exactly-leeway"),
    pytest.param({"nbf": LEEWAY_S + 1}, False, id="nbf-leeway-plus-1s"),
    pytest.param({"nbf": LEEWAY_S + 0.001}, False, id="nbf-leeway-plus-1ms"),
    pytest.param({"exp": 0}, True, id="expires-now"),
]


# -- against the verifier -----------------------------------------------------------------------


def verifier(cache_size: int = 100) -> TokenVerifier:
    config = JwtConfig(
        access_secret=JWT_SECRET,
        refresh_secret=JWT_SECRET,
        issuer=ISSUER,
        access_ttl_s=900,
        refresh_ttl_s=86400,
        leeway_s=LEEWAY_S,
        cache_size=cache_size,
    )
    return TokenVerifier(config, clock=lambda: float(NOW))


@pytest.mark.parametrize("make", REFUSED)
def test_the_verifier_refuses(make: Forge) -> None:
    tokens = verifier()
    token = make(NOW)

    for _ in range(2):  # and a refusal is not remembered as anything else
        with pytest.raises(Unauthorized) as refused:
            tokens.verify(token)
        assert refused.value.status == 401


@pytest.mark.parametrize("make", IGNORED_HEADERS)
def test_the_verifier_ignores_key_selecting_headers(make: Forge) -> None:
    assert verifier().verify(make(NOW)).tenant_id == "tenant-1"


@pytest.mark.parametrize(("offsets", "valid"), LEEWAY_EDGES)
def test_leeway_edges_on_the_injected_clock(offsets: dict[str, float], valid: bool) -> None:
    times = {name: NOW + offset for name, offset in offsets.items()}
    if "exp" not in times:
        times["exp"] = NOW + 600
    token = forge(claims(NOW, **times))

    if valid:
        assert verifier().verify(token).user_id == "user-1"
    else:
        with pytest.raises(Unauthorized):
            verifier().verify(token)


# -- against the gateway ------------------------------------------------------------------------


def assert_refused(gateway: GatewayProcess, services: Fleet, token: str) -> None:
    response = gateway.get(TARGET, headers=[("Authorization", f"Bearer {token}")])

    assert_problem(response, 401)
    assert (response.header("www-authenticate") or "").startswith("Bearer")
    # A forwarded request would have been answered by its upstream before we got the 401.
    assert services.total_requests() == 0


@pytest.mark.parametrize("make", REFUSED)
def test_the_gateway_refuses(gateway: GatewayProcess, services: Fleet, make: Forge) -> None:
    assert_refused(gateway, services, make(int(time.time())))


@pytest.mark.parametrize("make", IGNORED_HEADERS)
def test_the_gateway_ignores_key_selecting_headers(
    gateway: GatewayProcess, services: Fleet, make: Forge
) -> None:
    response = gateway.get(TARGET, token=make(int(time.time())))

    assert response.status == 200, response.body
    assert services["ticket"].only_request().header_values("x-tenant-id") == ["tenant-1"]


# Margins of 5 s either side of the leeway: the test and the gateway read the same wall clock,
# but not at the same instant.
@pytest.mark.parametrize(
    ("claim", "offset", "status"),
    [
        pytest.param("exp", -LEEWAY_S + 5, 200, id="expired-within-leeway"),
        pytest.param("exp", -LEEWAY_S - 5, 401, id="expired-past-leeway"),
        pytest.param("nbf", LEEWAY_S - 5, 200, id="nbf-within-leeway"),
        pytest.param("nbf", LEEWAY_S + 5, 401, id="nbf-past-leeway"),
    ],
)
def test_the_gateway_applies_the_leeway(
    gateway: GatewayProcess, services: Fleet, claim: str, offset: int, status: int
) -> None:
    now = int(time.time())
    token = forge(claims(now, **{claim: now + offset}))

    response = gateway.get(TARGET, token=token)

    assert response.status == status, response.body
    assert services.total_requests() == (1 if status == 200 else 0)


HUGE_TOKEN_BYTES = 100 * 1024
HUGE_TOKEN_ANSWER_S = 1.0


def test_a_100_kb_token_is_refused_as_too_large_before_verification(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # Validly signed: were it verified, it would pass. 431 shows the limit came first.
    padding = "p" * HUGE_TOKEN_BYTES
    token = forge(claims(int(time.time()), padding=padding))
    request = build_request("GET", TARGET, [("Authorization", f"Bearer {token}")])

    started = time.monotonic()
    with RawConnection(gateway.port) as connection:
        connection.send_tolerant(request)
        response = connection.read_response()
    elapsed = time.monotonic() - started

    assert_problem(response, 431)
    assert elapsed < HUGE_TOKEN_ANSWER_S, f"took {elapsed:.3f}s"
    assert services.total_requests() == 0
    assert gateway.get(TARGET, token=good(int(time.time()))).status == 200
