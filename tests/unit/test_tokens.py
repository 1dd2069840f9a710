"""Unit tests for access-token verification, its cache, minting and TTL parsing.

Every verifier runs on an injected clock fixed in the past, so no result depends on when the
tests run (``mint`` alone reads the wall clock).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import replace
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.compact import DECODER, parse_payload, well_formed
from api_gateway.config.settings import ClaimNames, JwtConfig
from api_gateway.errors import Unauthorized
from api_gateway.tokens import (
    StaticKeys,
    TokenVerifier,
    configured_keys,
    entry_cost,
    mint,
    parse_ttl,
    safe_claim,
)

SECRET = "s3cr3t-" + "x" * 60
OTHER_SECRET = "other-" + "y" * 60
ISSUER = "tickettoken-api"
LEEWAY = 60


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_config(
    cache_size: int = 100,
    secret: str = SECRET,
    cache_max_bytes: int = 1 << 30,
    max_token_bytes: int = 8192,
) -> JwtConfig:
    return JwtConfig(
        access_secret=secret,
        refresh_secret="r" * 40,
        issuer=ISSUER,
        access_ttl_s=900,
        refresh_ttl_s=86400,
        leeway_s=LEEWAY,
        cache_size=cache_size,
        cache_max_bytes=cache_max_bytes,
        max_token_bytes=max_token_bytes,
    )


NOW = 1_700_000_000.0  # 14 Nov 2023, long before the wall clock of any test run


@pytest.fixture
def now() -> float:
    return NOW


@pytest.fixture
def clock(now: float) -> Clock:
    return Clock(now)


@pytest.fixture
def verifier(clock: Clock) -> TokenVerifier:
    return TokenVerifier(make_config(), clock=clock)


def payload(now: float, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "tenant-1",
        "role": "customer",
        "email": "ada@example.com",
        "iss": ISSUER,
        "iat": int(now),
        "exp": int(now) + 600,
        "type": "access",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- valid tokens -------------------------------------------------------------------------------


def test_valid_token_yields_claims(verifier: TokenVerifier, now: float) -> None:
    claims = verifier.verify(sign(payload(now)))
    assert claims.user_id == "user-1"
    assert claims.tenant_id == "tenant-1"
    assert claims.role == "customer"
    assert claims.email == "ada@example.com"
    assert claims.expires_at == now + 600


def test_user_id_claim_is_used_without_sub(verifier: TokenVerifier, now: float) -> None:
    claims = verifier.verify(sign(payload(now, sub=None, user_id="legacy-7")))
    assert claims.user_id == "legacy-7"


def test_two_user_id_claims_that_disagree_are_refused(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, sub="new-1", user_id="legacy-7")))
    rejected(verifier, sign(payload(now, sub="new-1", userId="legacy-7")))
    rejected(verifier, sign(payload(now, tenantId="tenant-2")))


def test_claim_names_that_agree_or_stand_alone_are_read(
    verifier: TokenVerifier, now: float
) -> None:
    assert verifier.verify(sign(payload(now, user_id="user-1"))).user_id == "user-1"
    camel = payload(now, userId="u-9", tenantId="t-9", sub=None, tenant_id=None)
    claims = verifier.verify(sign({k: v for k, v in camel.items() if v is not None}))
    assert (claims.user_id, claims.tenant_id) == ("u-9", "t-9")


def test_claim_names_are_configurable(clock: Clock, now: float) -> None:
    names = ClaimNames(user_id=("uid",), tenant_id=("org",), role=("roles",), email=("mail",))
    verifier = TokenVerifier(replace(make_config(), claims=names), clock=clock)
    token = {"uid": "u-3", "org": "o-3", "roles": "admin", "mail": "a@b.c", "sub": "ignored"}
    claims = verifier.verify(sign({**payload(now), **token}))
    assert (claims.user_id, claims.tenant_id, claims.role, claims.email) == (
        "u-3",
        "o-3",
        "admin",
        "a@b.c",
    )


def test_role_and_email_are_optional(verifier: TokenVerifier, now: float) -> None:
    claims = verifier.verify(sign(payload(now, role=None, email=None)))
    assert claims.role == ""
    assert claims.email == ""


def test_non_string_email_is_dropped(verifier: TokenVerifier, now: float) -> None:
    assert verifier.verify(sign(payload(now, email=42))).email == ""


def test_claim_of_exactly_128_safe_characters_is_accepted(
    verifier: TokenVerifier, now: float
) -> None:
    long_id = "a" * 128
    claims = verifier.verify(sign(payload(now, sub=long_id, tenant_id=long_id, role=long_id)))
    assert (claims.user_id, claims.tenant_id, claims.role) == (long_id, long_id, long_id)


def test_claims_with_all_safe_punctuation(verifier: TokenVerifier, now: float) -> None:
    value = "usr_1.a:b@c-d"
    assert verifier.verify(sign(payload(now, sub=value))).user_id == value


def test_token_expired_within_leeway_is_accepted(verifier: TokenVerifier, now: float) -> None:
    assert verifier.verify(sign(payload(now, exp=int(now) - 30))).user_id == "user-1"


def test_token_not_yet_valid_within_leeway_is_accepted(verifier: TokenVerifier, now: float) -> None:
    assert verifier.verify(sign(payload(now, nbf=int(now) + 30))).user_id == "user-1"


# --- rejected tokens ----------------------------------------------------------------------------


def rejected(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token)
    assert info.value.status == 401
    return info.value


def test_bad_signature_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now), secret=OTHER_SECRET))


def test_tampered_payload_is_rejected(verifier: TokenVerifier, now: float) -> None:
    header, _, signature = sign(payload(now)).split(".")
    forged = b64(payload(now, role="admin"))
    rejected(verifier, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none_is_rejected(verifier: TokenVerifier, now: float, signature: str) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload(now))}.{signature}"
    rejected(verifier, token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithm_with_same_secret_is_rejected(
    verifier: TokenVerifier, now: float, algorithm: str
) -> None:
    rejected(verifier, sign(payload(now), algorithm=algorithm))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b", "Bearer x.y.z"])
def test_malformed_token_is_rejected(verifier: TokenVerifier, token: str) -> None:
    rejected(verifier, token)


@pytest.mark.parametrize(
    "respell",
    [
        pytest.param(lambda t: t + "=", id="padded-signature"),
        pytest.param(lambda t: t.replace(".", "==.", 1), id="padded-header"),
        pytest.param(lambda t: t.replace(".", ".\t", 1), id="tab-inside"),
        pytest.param(lambda t: t + ".", id="fourth-empty-segment"),
    ],
)
def test_token_spelled_other_than_unpadded_base64url_is_rejected(
    verifier: TokenVerifier, now: float, respell: Any
) -> None:
    # One token, one string: a second spelling would be a second cache entry, and an upstream
    # that reads the forwarded token strictly would refuse what the gateway let through.
    error = rejected(verifier, respell(sign(payload(now))))
    assert "base64url" in error.detail


def test_wrong_issuer_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, iss="someone-else")))


def test_missing_issuer_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, iss=None)))


def test_missing_exp_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, exp=None)))


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["tomorrow", True, [1], {"t": 1}])
def test_non_numeric_time_claim_is_rejected(
    verifier: TokenVerifier, now: float, claim: str, value: Any
) -> None:
    rejected(verifier, sign(payload(now, **{claim: value})))


def signed_text(claims_json: str, secret: str = SECRET, header: str = '{"alg":"HS256"}') -> str:
    """A token whose header and payload are exactly the JSON texts given."""
    signing_input = f"{b64_raw(header.encode())}.{b64_raw(claims_json.encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64_raw(mac)}"


def b64_raw(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("claim", ["tenant_id", "sub", "exp", "iss"])
def test_repeated_claim_is_rejected(verifier: TokenVerifier, now: float, claim: str) -> None:
    # Parsers differ on which copy wins: the gateway and an upstream could see two tenants.
    text = json.dumps(payload(now))[:-1] + f', "{claim}": "other"}}'
    error = rejected(verifier, signed_text(text))
    assert "repeated" in error.detail


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_non_json_number_in_time_claim_is_rejected(
    verifier: TokenVerifier, now: float, claim: str, constant: str
) -> None:
    # `exp: NaN` compares false with everything, so it would never expire.
    text = json.dumps({**payload(now, **{claim: None}), claim: 0})[:-2] + constant + "}"
    assert text.endswith(f'"{claim}": {constant}}}')
    rejected(verifier, signed_text(text))


@pytest.mark.parametrize("text", ["[]", '"claims"', "42", "null", "{"])
def test_payload_that_is_not_one_json_object_is_rejected(
    verifier: TokenVerifier, text: str
) -> None:
    rejected(verifier, signed_text(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '{"a": 1} \n',
        '{"a": 1}x',
        '{"a": 1}{}',
        '{"a": }',
        '{"a": [1, ',
        '{"a" 1}',
        '{"a": 1,}',
        '{"a": 1, "a": 2}',
        '{"a": NaN}',
        '{"a": -Infinity}',
        '{"a": {"b": [1, {"c": null}]}}',
        '{"a": "\\ud800"}',
    ],
)
def test_a_payload_is_read_as_the_json_decoder_reads_it(text: str) -> None:
    try:
        expected: object = DECODER.decode(text)
    except ValueError as exc:
        expected = f"the access token's payload is refused: {exc}"
    try:
        found: object = parse_payload(text.encode())
    except Unauthorized as exc:
        found = exc.detail
    assert found == expected


def test_any_audience_is_accepted_when_none_is_configured(
    verifier: TokenVerifier, now: float
) -> None:
    assert verifier.verify(sign(payload(now, aud="billing"))).user_id == "user-1"
    assert verifier.verify(sign(payload(now, aud=["a", "b"]))).user_id == "user-1"


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        ("tickettoken-api", True),
        (["other", "tickettoken-gateway"], True),
        ("billing", False),
        (["billing", "other"], False),
        (None, False),  # required once an audience is configured
        ([], False),
        (42, False),
        ([42, "tickettoken-api"], False),
    ],
)
def test_a_configured_audience_is_required_and_must_match(
    clock: Clock, now: float, aud: Any, accepted: bool
) -> None:
    config = replace(make_config(), audience=("tickettoken-api", "tickettoken-gateway"))
    verifier = TokenVerifier(config, clock=clock)
    claims = payload(now) if aud is None else payload(now, aud=aud)
    if accepted:
        assert verifier.verify(sign(claims)).tenant_id == "tenant-1"
    else:
        rejected(verifier, sign(claims))


def test_critical_header_extension_is_rejected(verifier: TokenVerifier, now: float) -> None:
    header = '{"alg":"HS256","crit":["exp-ms"],"exp-ms":true}'
    rejected(verifier, signed_text(json.dumps(payload(now)), header=header))


@pytest.mark.parametrize(
    ("claim", "text"),
    [
        # Milliseconds: the token would expire in the year 55 000.
        pytest.param("exp", str((int(NOW) + 600) * 1000), id="exp-in-milliseconds"),
        # Overflowed float() on the way to Claims: an error 500.
        pytest.param("exp", "1" + "0" * 400, id="exp-401-digits"),
        # JSON's own spelling of a float that is infinite.
        pytest.param("exp", "1e400", id="exp-1e400"),
        pytest.param("nbf", "-1e400", id="nbf-minus-1e400"),
    ],
)
def test_time_claim_that_is_not_a_time_in_seconds_is_rejected(
    verifier: TokenVerifier, now: float, claim: str, text: str
) -> None:
    document = json.dumps({**payload(now, **{claim: None}), claim: 0})
    error = rejected(verifier, signed_text(document[:-2] + text + "}"))
    assert "seconds" in error.detail


def test_fractional_exp_is_accepted(verifier: TokenVerifier, now: float) -> None:
    assert verifier.verify(sign(payload(now, exp=now + 0.5))).expires_at == now + 0.5


def test_token_expired_beyond_leeway_is_rejected(verifier: TokenVerifier, now: float) -> None:
    error = rejected(verifier, sign(payload(now, iat=int(now) - 900, exp=int(now) - 120)))
    assert "expired" in error.detail


def test_token_not_yet_valid_beyond_leeway_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, nbf=int(now) + 600)))


def test_refresh_token_is_rejected(verifier: TokenVerifier, now: float) -> None:
    error = rejected(verifier, sign(payload(now, type="refresh")))
    assert "refresh" in error.detail


@pytest.mark.parametrize("claim", ["sub", "tenant_id", "role"])
@pytest.mark.parametrize(
    "value", ["a b", "a,b", "a\r\nX-Admin: 1", "a\nb", "a;b", "a" * 129, "é", 42, ["x"]]
)
def test_unsafe_claim_value_is_rejected(
    verifier: TokenVerifier, now: float, claim: str, value: Any
) -> None:
    if claim == "sub" and not isinstance(value, str):
        value = str(value) + " "  # PyJWT itself refuses a non-string sub
    rejected(verifier, sign(payload(now, **{claim: value})))


def test_unsafe_user_id_claim_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, sub=None, user_id="a\r\nb")))


@pytest.mark.parametrize("claim", ["tenant_id", "sub"])
def test_missing_identity_claim_is_rejected(
    verifier: TokenVerifier, now: float, claim: str
) -> None:
    rejected(verifier, sign(payload(now, **{claim: None})))


def test_empty_tenant_is_rejected(verifier: TokenVerifier, now: float) -> None:
    rejected(verifier, sign(payload(now, tenant_id="")))


def test_rejection_carries_bearer_challenge(verifier: TokenVerifier) -> None:
    error = rejected(verifier, "garbage")
    assert (b"www-authenticate", b'Bearer realm="api-gateway", error="invalid_token"') in (
        error.headers
    )


@given(st.text(min_size=1, max_size=140))
def test_accepted_claims_are_always_header_safe(value: str) -> None:
    verifier = TokenVerifier(make_config(), clock=Clock(NOW))
    try:
        claims = verifier.verify(sign(payload(NOW, sub=value, tenant_id=value, role=value)))
    except Unauthorized:
        return
    for field in (claims.user_id, claims.tenant_id, claims.role):
        assert field.isascii()
        assert 1 <= len(field) <= 128
        assert not set(field) & set(" ,;\r\n\t\"'\x00")


SAFE_CLAIM = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


@given(st.one_of(st.text(max_size=140), st.text("aZ09_.:@-\u0660\u212a\n ", max_size=130)))
def test_a_safe_claim_is_what_the_documented_pattern_matches(value: str) -> None:
    assert safe_claim(value) == bool(SAFE_CLAIM.fullmatch(value))


def test_a_safe_claim_is_a_string_of_1_to_128_safe_characters() -> None:
    assert safe_claim("a" * 128) and not safe_claim("a" * 129) and not safe_claim("")
    assert not safe_claim(7) and not safe_claim(None) and not safe_claim(b"abc")
    assert not safe_claim("\u0661") and not safe_claim("\u212a") and not safe_claim("a\n")


# --- injected clock -----------------------------------------------------------------------------


def test_expiry_follows_injected_clock_on_first_verify() -> None:
    # By the verifier's clock the token expired an hour ago, although the wall clock says
    # it is still valid.
    issued = time.time()
    verifier = TokenVerifier(make_config(), clock=Clock(issued + 2 * 3600))
    rejected(verifier, sign(payload(issued, exp=int(issued) + 3600)))


def test_validity_follows_injected_clock_on_first_verify(now: float) -> None:
    # By the verifier's clock the token is valid for another hour; by the wall clock it expired.
    verifier = TokenVerifier(make_config(), clock=Clock(now))
    assert verifier.verify(sign(payload(now, exp=int(now) + 3600))).user_id == "user-1"


@pytest.mark.parametrize(("offset", "valid"), [(LEEWAY, True), (LEEWAY + 1, False)])
def test_expiry_leeway_boundary(now: float, offset: int, valid: bool) -> None:
    verifier = TokenVerifier(make_config(), clock=Clock(now + 100 + offset))
    token = sign(payload(now, exp=int(now) + 100))
    if valid:
        assert verifier.verify(token).user_id == "user-1"
    else:
        rejected(verifier, token)


@pytest.mark.parametrize(("offset", "valid"), [(LEEWAY, True), (LEEWAY + 1, False)])
def test_not_before_leeway_boundary(now: float, offset: int, valid: bool) -> None:
    verifier = TokenVerifier(make_config(), clock=Clock(now))
    token = sign(payload(now, nbf=int(now) + offset))
    if valid:
        assert verifier.verify(token).user_id == "user-1"
    else:
        rejected(verifier, token)


# --- cache --------------------------------------------------------------------------------------


def test_verified_token_is_served_from_cache(verifier: TokenVerifier, now: float) -> None:
    token = sign(payload(now))
    first = verifier.verify(token)
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    assert verifier.verify(token) is first  # a fresh verification would have failed


def test_uncached_token_is_checked_against_current_secret(
    verifier: TokenVerifier, now: float
) -> None:
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    rejected(verifier, sign(payload(now)))


def test_cache_disabled_with_size_zero(clock: Clock, now: float) -> None:
    verifier = TokenVerifier(make_config(cache_size=0), clock=clock)
    token = sign(payload(now))
    verifier.verify(token)
    assert len(verifier.cache) == 0
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    rejected(verifier, token)


def test_rejected_token_is_not_cached(verifier: TokenVerifier, now: float) -> None:
    token = sign(payload(now), secret=OTHER_SECRET)
    rejected(verifier, token)
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    assert verifier.verify(token).user_id == "user-1"


def test_cached_token_within_leeway_after_expiry_is_accepted(
    verifier: TokenVerifier, clock: Clock, now: float
) -> None:
    token = sign(payload(now, exp=int(now) + 10))
    verifier.verify(token)
    clock.now = now + 10 + LEEWAY
    assert verifier.verify(token).user_id == "user-1"


def test_cached_token_expires_by_injected_clock(
    verifier: TokenVerifier, clock: Clock, now: float
) -> None:
    token = sign(payload(now, exp=int(now) + 10))
    verifier.verify(token)
    clock.now = now + 10 + LEEWAY + 1
    error = rejected(verifier, token)
    assert "expired" in error.detail
    assert b"Bearer " + token.encode() not in verifier.cache


def test_cached_expired_token_stays_rejected(
    verifier: TokenVerifier, clock: Clock, now: float
) -> None:
    token = sign(payload(now, exp=int(now) + 10))
    verifier.verify(token)
    clock.now = now + 3600
    rejected(verifier, token)  # the cache entry is dropped here...
    rejected(verifier, token)  # ...and a fresh verification must agree


@pytest.mark.parametrize("size", [1, 2, 5])
def test_cache_never_exceeds_its_size(clock: Clock, now: float, size: int) -> None:
    verifier = TokenVerifier(make_config(cache_size=size), clock=clock)
    for i in range(3 * size + 2):
        verifier.verify(sign(payload(now, sub=f"user-{i}")))
        assert len(verifier.cache) == min(i + 1, size)


def test_cache_keeps_the_tokens_in_use_and_drops_the_unused(clock: Clock, now: float) -> None:
    verifier = TokenVerifier(make_config(cache_size=4), clock=clock)
    hot = sign(payload(now, sub="user-hot"))
    once = sign(payload(now, sub="user-once"))
    verifier.verify(hot)
    verifier.verify(once)
    for i in range(20):
        verifier.verify(sign(payload(now, sub=f"user-{i}")))
        verifier.verify(hot)  # in use: asked for between any two new tokens
        assert len(verifier.cache) <= 4
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    assert verifier.verify(hot).user_id == "user-hot"  # from the cache
    rejected(verifier, once)  # dropped: verified again, against the other secret


# --- mint ---------------------------------------------------------------------------------------


def test_minted_token_verifies_with_same_config() -> None:
    config = make_config()
    start = time.time()
    token = mint(config, "user-9", "tenant-9", role="admin", email="x@example.com")
    claims = TokenVerifier(config, clock=time.time).verify(token)
    assert (claims.user_id, claims.tenant_id, claims.role, claims.email) == (
        "user-9",
        "tenant-9",
        "admin",
        "x@example.com",
    )
    assert int(start) + 900 <= claims.expires_at <= time.time() + 900


def test_minted_token_is_hs256_access_token_with_issuer() -> None:
    token = mint(make_config(), "u", "t", ttl_s=120)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=ISSUER)
    assert decoded["type"] == "access"
    assert decoded["exp"] - decoded["iat"] == 120
    assert decoded["role"] == "user"
    assert "email" not in decoded


def test_minted_token_does_not_verify_with_another_secret() -> None:
    token = mint(make_config(), "u", "t")
    verifier = TokenVerifier(make_config(secret=OTHER_SECRET), clock=time.time)
    rejected(verifier, token)


# --- parse_ttl ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 604800),
        ("0", 0),
        (" 2h ", 7200),
    ],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "abc", "1.5h", "-5m", "10w", "h", "1 h", "1hm", "1H", "15 minutes", "1e3"]
)
def test_parse_ttl_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)


@given(st.integers(0, 10**6), st.sampled_from([("", 1), ("s", 1), ("m", 60), ("h", 3600)]))
def test_parse_ttl_scales_by_unit(amount: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert parse_ttl(f"{amount}{suffix}") == amount * factor


# --- Authorization values -----------------------------------------------------------------------


def test_an_authorization_value_is_known_until_its_token_expires(
    verifier: TokenVerifier, clock: Clock, now: float
) -> None:
    token = sign(payload(now))
    claims = verifier.authenticate(b"Bearer " + token.encode())
    # a fresh verification would now fail
    verifier.source = StaticKeys(configured_keys(make_config(secret=OTHER_SECRET)))
    assert verifier.authenticate(b"bearer " + token.encode()) is claims
    clock.now = now + 600 + LEEWAY + 1
    with pytest.raises(Unauthorized, match="expired"):
        verifier.authenticate(b"Bearer " + token.encode())
    assert len(verifier.cache) == 0 and verifier.cached_bytes == 0


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER", b"bEaReR"])
@pytest.mark.parametrize("trailing", [b"", b" ", b"\t", b"   \t  "])
def test_every_accepted_spelling_of_a_token_is_one_entry(
    verifier: TokenVerifier, now: float, scheme: bytes, trailing: bytes
) -> None:
    token = sign(payload(now)).encode()
    first = verifier.authenticate(b"Bearer " + token)
    assert verifier.authenticate(scheme + b" " + token + trailing) is first
    assert list(verifier.cache) == [b"Bearer " + token]


@pytest.mark.parametrize(
    "shape",
    [
        b"Bearer  {t}",
        b"Bearer\t{t}",
        b"Bearer{t}",
        b"Basic {t}",
        b"Bearer",
        b"Bearer ",
        b"Bearer {t} {t}",
        b"Token {t}",
        b"Bearer \xff{t}",
    ],
)
def test_anything_but_the_scheme_one_space_and_the_token_is_refused(
    verifier: TokenVerifier, now: float, shape: bytes
) -> None:
    token = sign(payload(now)).encode()
    verifier.authenticate(b"Bearer " + token)  # cached: a lax reader would find it
    with pytest.raises(Unauthorized) as info:
        verifier.authenticate(shape.replace(b"{t}", token))
    assert info.value.status == 401
    assert list(verifier.cache) == [b"Bearer " + token]


def test_a_token_over_the_limit_is_refused_before_it_is_read(clock: Clock, now: float) -> None:
    verifier = TokenVerifier(make_config(max_token_bytes=1024), clock=clock)
    token = sign(payload(now, email="e" * 1000)).encode()
    assert len(token) > 1024
    verifier.source = StaticKeys(configured_keys(make_config(secret="n" * 40)))
    with pytest.raises(Unauthorized, match="longer"):
        verifier.authenticate(b"Bearer " + token)
    assert len(verifier.cache) == 0


@pytest.mark.parametrize("max_bytes", [0, 3000, 20_000])
def test_the_cache_never_holds_more_bytes_than_its_bound(
    clock: Clock, now: float, max_bytes: int
) -> None:
    verifier = TokenVerifier(make_config(cache_size=1000, cache_max_bytes=max_bytes), clock=clock)
    for n in range(40):
        token = sign(payload(now, sub=f"user-{n}", email="e" * (40 * n))).encode()
        verifier.authenticate(b"Bearer " + token)
        assert verifier.cached_bytes == sum(entry_cost(t) for t in verifier.cache)
        assert verifier.cached_bytes <= max_bytes
    assert (max_bytes == 0) == (not verifier.cache)


def test_nothing_is_remembered_without_a_cache(clock: Clock, now: float) -> None:
    verifier = TokenVerifier(make_config(cache_size=0), clock=clock)
    token = sign(payload(now))
    verifier.authenticate(b"Bearer " + token.encode())
    assert len(verifier.cache) == 0


# --- the shape of a token -----------------------------------------------------------------------

COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@given(st.binary(max_size=40) | st.text("ab-_.=+/ \t\x00é", max_size=40).map(str.encode))
def test_well_formed_is_the_compact_serialization_exactly(token: bytes) -> None:
    assert well_formed(token) == bool(COMPACT.fullmatch(token))


@pytest.mark.parametrize(
    "token",
    [
        b"a.b.c",
        b"eyJ.eyJ.sig-_",
        b"",
        b"..",
        b"a..c",
        b".b.c",
        b"a.b.",
        b"a.b.c.d",
        b"a.b",
        b"a.\xffb.c",
        b"a.b.c\n",
        b"a\x00.b.c",
    ],
)
def test_well_formed_examples(token: bytes) -> None:
    assert well_formed(token) == bool(COMPACT.fullmatch(token))


def test_a_header_seen_before_is_not_decoded_again_and_a_refused_one_is_never_kept(
    verifier: TokenVerifier, now: float
) -> None:
    verifier.verify(sign(payload(now, sub="user-1")))
    assert len(verifier.headers) == 1
    verifier.verify(sign(payload(now, sub="user-2")))
    assert len(verifier.headers) == 1  # the same header segment
    refused = jwt.encode(payload(now), SECRET, algorithm="HS256", headers={"crit": ["x"]})
    rejected(verifier, refused)
    rejected(verifier, refused)  # refused again: the check was not remembered as passed
    assert len(verifier.headers) == 1
