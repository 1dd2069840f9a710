"""Stripe signatures (webhooks.py): parsed and checked as Stripe's libraries do, against
signatures made with the real algorithm; the time is given, never waited for."""

from __future__ import annotations

import pytest
from support.stripe import OLD_SECRET, SECRET, stripe_signature, v1

from api_gateway.webhooks import (
    SignatureError,
    StripeSignatures,
    event_id,
    parse_signature,
    signature_header,
)

BODY = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded"}'
NOW = 1_700_000_000
TOLERANCE_S = 300.0


def verified(header: str, body: bytes = BODY, now: float = NOW, *secrets: str) -> bool:
    signatures = StripeSignatures(secrets or (SECRET,), TOLERANCE_S)
    signature = parse_signature(header.encode())
    signatures.check_time(signature, now)
    return signatures.matches(signature, body)


def refusal(header: str, now: float = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verified(header, BODY, now)
    return str(caught.value)


def test_a_signature_made_by_stripes_algorithm_verifies() -> None:
    assert verified(stripe_signature(BODY, t=NOW))


def test_any_change_to_the_body_fails_it() -> None:
    header = stripe_signature(BODY, t=NOW)

    assert not verified(header, BODY + b" ")
    assert not verified(header, BODY.replace(b"succeeded", b"refunded"))


def test_the_signed_timestamp_is_part_of_the_signature() -> None:
    signed = v1(BODY, SECRET, NOW)

    assert not verified(f"t={NOW - 1},v1={signed}")


def test_the_timestamp_is_signed_as_a_plain_number() -> None:
    signed = v1(BODY, SECRET, NOW)

    assert verified(f"t=00{NOW},v1={signed}")


def test_a_long_header_of_forged_entries_then_a_good_one_verifies() -> None:
    forged = ",".join(f"v1={n:064x}" for n in range(200))

    assert verified(f"t={NOW},{forged},v1={v1(BODY, SECRET, NOW)}")
    assert not verified(f"t={NOW},{forged}")


def test_another_secret_fails_it() -> None:
    assert not verified(stripe_signature(BODY, ("whsec_someone_else",), t=NOW))


def test_during_a_rotation_either_secret_verifies() -> None:
    for signer in (SECRET, OLD_SECRET):
        header = stripe_signature(BODY, (signer,), t=NOW)
        assert verified(header, BODY, NOW, SECRET, OLD_SECRET)


def test_any_of_several_v1_entries_may_match() -> None:
    good = v1(BODY, SECRET, NOW)
    forged = "0" * 64

    assert verified(f"t={NOW},v1={forged},v1={good}")
    assert verified(f"t={NOW},v1={good},v1={forged},v0={forged}")
    assert not verified(f"t={NOW},v1={forged},v1={'f' * 64}")


def test_v0_and_unknown_schemes_are_ignored() -> None:
    good = v1(BODY, SECRET, NOW)

    assert verified(f"t={NOW},v1={good},v0={'a' * 64},v9=whatever")
    # A v0 that would match counts for nothing: only v1 is Stripe's live scheme.
    assert "no v1" in refusal(f"t={NOW},v0={good}")


def test_the_timestamp_may_be_off_by_the_tolerance_either_way() -> None:
    header = stripe_signature(BODY, t=NOW)

    assert verified(header, BODY, NOW + TOLERANCE_S)
    assert verified(header, BODY, NOW - TOLERANCE_S)


def test_a_stale_timestamp_is_refused() -> None:
    assert "tolerance" in refusal(stripe_signature(BODY, t=NOW), now=NOW + TOLERANCE_S + 1)


def test_a_timestamp_in_the_future_is_refused() -> None:
    assert "future" in refusal(stripe_signature(BODY, t=NOW), now=NOW - TOLERANCE_S - 1)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"v1={'a' * 64}", "no timestamp"),
        (f"t=,v1={'a' * 64}", "not a number"),
        (f"t=-5,v1={'a' * 64}", "not a number"),
        (f"t=1e9,v1={'a' * 64}", "not a number"),
        (f"t={'9' * 13},v1={'a' * 64}", "not a number"),
        (f"t={NOW},t={NOW},v1={'a' * 64}", "more than one t"),
        (f"t={NOW}", "no v1"),
        (f"t={NOW},v1", "malformed"),
        (f"t={NOW},,v1={'a' * 64}", "malformed"),
        ("", "malformed"),
        (f"=x,t={NOW}", "malformed"),
    ],
)
def test_a_malformed_header_is_refused_with_its_reason(header: str, reason: str) -> None:
    assert reason in refusal(header)


def test_spaces_around_the_entries_are_allowed() -> None:
    good = v1(BODY, SECRET, NOW)

    assert verified(f"t={NOW}, v1={good}")


def test_the_header_must_be_present_once() -> None:
    header = stripe_signature(BODY, t=NOW).encode()

    assert signature_header([(b"stripe-signature", header)]) == header
    with pytest.raises(SignatureError, match="missing"):
        signature_header([(b"content-type", b"application/json")])
    with pytest.raises(SignatureError, match="more than one"):
        signature_header([(b"stripe-signature", header), (b"stripe-signature", header)])


def test_a_refusal_never_names_a_secret() -> None:
    for header in (f"t={NOW}", stripe_signature(BODY, t=NOW)):
        with pytest.raises(SignatureError) as caught:
            verified(header, BODY, NOW + 10 * TOLERANCE_S)
        assert "whsec" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (BODY, "evt_1NG8Du2eZvKYlo2CUI79vXWy"),
        (b' {"data": {"id": "ch_1"}, "id" : "evt_2"} ', "evt_2"),
        (b'{"data": {"id": "ch_1"}}', None),
        (b'{"id": 42}', None),
        (b'{"id": ""}', None),
        (b'{"id": "' + b"x" * 256 + b'"}', None),
        (b'["evt_3"]', None),
        (b"not json", None),
        (b"", None),
        (b"[" * 5000 + b"]" * 5000, None),
    ],
)
def test_the_event_id_comes_from_the_body(body: bytes, expected: str | None) -> None:
    assert event_id(body) == expected
