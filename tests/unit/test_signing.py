"""The signing core and its settings, checked by the services' validator as the tests know it
(support/internal_auth.py), never by re-deriving the gateway's own code."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from pathlib import Path

import pytest
from support.internal_auth import InternalAuthCheck
from support.upstream import RecordedRequest

from api_gateway.config import loader
from api_gateway.config.settings import ConfigError
from api_gateway.signing import (
    Prefixed,
    Signer,
    buffer_body,
    is_json,
    open_signer,
    uuid4,
)
from api_gateway.types import Headers, Request
from api_gateway.upstream.forward import render_head
from api_gateway.upstream.health import probe_head

SECRET = "s" * 32
NOW_MS = 1_765_000_000_000
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
BASE_ENV = {"JWT_SECRET": "j" * 40}


class Counter:
    """Distinct random bytes per call, so nonces differ as os.urandom's would."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        return bytes([self.calls]) * size


def signer(legacy: bool = False) -> Signer:
    return Signer(SECRET.encode(), legacy, lambda: NOW_MS, Counter())


def as_received(
    method: str, target: str, headers: Headers, body: bytes = b"", content_type: str = ""
) -> RecordedRequest:
    fields = [(name.decode(), value.decode()) for name, value in headers]
    if content_type:
        fields.append(("content-type", content_type))
    return RecordedRequest(method, target, "HTTP/1.1", fields, b"", body=body)


def names(headers: Headers) -> list[bytes]:
    return [name for name, _ in headers]


def test_a_get_carries_four_headers_the_validator_accepts() -> None:
    headers = signer().headers("GET", b"/api/v1/events/1?page=2", None)

    assert names(headers) == [
        b"x-internal-service",
        b"x-internal-timestamp",
        b"x-internal-nonce",
        b"x-internal-signature",
    ]
    assert dict(headers)[b"x-internal-service"] == b"api-gateway"
    assert dict(headers)[b"x-internal-timestamp"] == str(NOW_MS).encode()
    record = as_received("GET", "/api/v1/events/1?page=2", headers)
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) is None


def test_the_query_is_part_of_what_is_signed() -> None:
    headers = signer().headers("GET", b"/api/v1/events/1?page=2", b"")
    record = as_received("GET", "/api/v1/events/1?page=3", headers)

    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) == "invalid signature"


def test_a_body_is_hashed_as_sent_and_the_validator_accepts_it() -> None:
    body = b'{"eventId":"e1","quantity":2}'
    headers = signer().headers("POST", b"/api/v1/tickets/purchase", body)

    assert dict(headers)[b"x-internal-body-hash"] == hashlib.sha256(body).hexdigest().encode()
    record = as_received(
        "POST", "/api/v1/tickets/purchase", headers, body, content_type="application/json"
    )
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) is None


def test_json_written_otherwise_is_hashed_as_the_validator_re_writes_it() -> None:
    body = b'{ "eventId": "e1",\n  "note": "caf\\u00e9", "quantity": 2 }'
    headers = signer().headers("POST", b"/api/v1/tickets/purchase", body, json=True)

    assert dict(headers)[b"x-internal-body-hash"] != hashlib.sha256(body).hexdigest().encode()
    record = as_received(
        "POST", "/api/v1/tickets/purchase", headers, body, content_type="application/json"
    )
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) is None


def test_is_json_reads_the_media_type_only() -> None:
    assert is_json([(b"content-type", b"Application/JSON; charset=utf-8")])
    assert not is_json([(b"content-type", b"application/vnd.api+json")])
    assert not is_json([(b"content-type", b"text/plain")])
    assert not is_json([])


def test_a_changed_body_or_secret_is_refused() -> None:
    body = b'{"quantity":2}'
    headers = signer().headers("POST", b"/api/v1/tickets/purchase", body)
    tampered = as_received("POST", "/api/v1/tickets/purchase", headers, b'{"quantity":9}')
    honest = as_received("POST", "/api/v1/tickets/purchase", headers, body)

    assert InternalAuthCheck(SECRET).verify(tampered, NOW_MS) == "body hash mismatch"
    assert InternalAuthCheck("t" * 32).verify(honest, NOW_MS) == "invalid signature"


def test_each_signature_has_a_fresh_uuid4_nonce() -> None:
    sign = signer()
    first = dict(sign.headers("GET", b"/x", None))[b"x-internal-nonce"]
    second = dict(sign.headers("GET", b"/x", None))[b"x-internal-nonce"]

    assert first != second
    assert UUID4.fullmatch(first.decode()) and UUID4.fullmatch(second.decode())


def test_uuid4_sets_the_version_and_variant_digits() -> None:
    assert uuid4(b"\xff" * 16) == b"ffffffff-ffff-4fff-bfff-ffffffffffff"
    assert uuid4(bytes(16)) == b"00000000-0000-4000-8000-000000000000"
    parsed = uuid.UUID(uuid4(os.urandom(16)).decode())
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_replayed_or_stale_signature_is_refused() -> None:
    headers = signer().headers("GET", b"/x", None)
    record = as_received("GET", "/x", headers)
    check = InternalAuthCheck(SECRET)

    assert check.verify(record, NOW_MS + 60_000) is None
    assert check.verify(record, NOW_MS) == "nonce reused"
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS + 60_001) == (
        "timestamp outside the window"
    )


def test_a_streamed_body_is_signed_as_no_body() -> None:
    headers = signer().headers("POST", b"/api/v1/files/upload", None)

    assert b"x-internal-body-hash" not in names(headers)
    record = as_received("POST", "/api/v1/files/upload", headers)
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) is None


def test_the_legacy_format_has_no_nonce_and_signs_the_body() -> None:
    body = b'{"a":1}'
    headers = signer(legacy=True).headers("POST", b"/api/v1/x?y=1", body)

    assert names(headers) == [
        b"x-internal-service",
        b"x-internal-timestamp",
        b"x-internal-signature",
    ]
    check = InternalAuthCheck(SECRET, legacy=True)
    assert check.verify(as_received("POST", "/api/v1/x?y=1", headers, body), NOW_MS) is None
    empty = signer(legacy=True).headers("GET", b"/api/v1/x", b"")
    assert check.verify(as_received("GET", "/api/v1/x", empty), NOW_MS) is None


def test_render_head_signs_the_target_and_body_it_renders() -> None:
    request = Request("PUT", b"/api/v1/venues/v1?x=1", [], b'{"n":1}', "127.0.0.1")
    request.path, request.query = "/api/v1/venues/v1", b"x=1"
    head, _ = render_head(request, b"host: venue:3002", 1000, signer())

    lines = head.decode().split("\r\n")
    fields = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    signed = [(n.encode(), v.encode()) for n, v in fields if n.startswith("x-internal-")]
    assert len(signed) == 5
    record = as_received("PUT", "/api/v1/venues/v1?x=1", signed, b'{"n":1}')
    assert InternalAuthCheck(SECRET).verify(record, NOW_MS) is None
    unsigned, _ = render_head(request, b"host: venue:3002", 1000)
    assert b"x-internal-" not in unsigned


def test_a_health_probe_is_signed_when_a_signer_is_given() -> None:
    head = probe_head("/health", "10.0.0.1:3004", signer())

    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    lines = head.decode().split("\r\n")[1:-2]
    fields = [tuple(line.split(": ", 1)) for line in lines]
    signed = [(n.encode(), v.encode()) for n, v in fields if n.startswith("x-internal-")]
    assert InternalAuthCheck(SECRET).verify(as_received("GET", "/health", signed), NOW_MS) is None


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["INTERNAL_HMAC_SECRET", "INTERNAL_SERVICE_SECRET"])
def test_a_short_secret_is_refused_naming_its_variable(variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        loader.load(env={**BASE_ENV, variable: "x" * 31})

    assert error.value.key == variable
    assert "x" * 31 not in str(error.value)


def test_a_short_secret_in_the_file_is_refused_naming_its_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("internal_auth: {secret: short}\n")

    with pytest.raises(ConfigError) as error:
        loader.load(str(config), env=BASE_ENV)

    assert error.value.key == "internal_auth.secret"


def test_the_hmac_secret_is_preferred_and_may_come_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("h" * 32 + "\n")
    env = {
        **BASE_ENV,
        "INTERNAL_HMAC_SECRET_FILE": str(secret_file),
        "INTERNAL_SERVICE_SECRET": "v" * 32,
    }

    config = loader.load(env=env).internal_auth

    assert config.secret == "h" * 32 and config.new_hmac
    assert "h" * 32 not in repr(config) and "h" * 32 not in repr(loader.load(env=env))


def test_use_new_hmac_false_selects_the_legacy_format_and_its_secret() -> None:
    env = {
        **BASE_ENV,
        "INTERNAL_HMAC_SECRET": "h" * 32,
        "INTERNAL_SERVICE_SECRET": "v" * 32,
        "USE_NEW_HMAC": "false",
    }

    config = loader.load(env=env).internal_auth

    assert config.secret == "v" * 32 and not config.new_hmac
    opened = open_signer(config)
    assert opened is not None and opened.legacy


def test_use_new_hmac_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError) as error:
        loader.load(env={**BASE_ENV, "USE_NEW_HMAC": "maybe"})

    assert error.value.key == "USE_NEW_HMAC"


def test_without_a_secret_nothing_is_signed_and_it_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = loader.load(env=BASE_ENV).internal_auth

    with caplog.at_level("WARNING"):
        assert open_signer(config) is None

    assert [r.getMessage() for r in caplog.records if "INTERNAL_HMAC_SECRET" in r.getMessage()]


# --- a body still arriving ---------------------------------------------------------------------


class Stream:
    """A body arriving in chunks, as the data plane's stream yields it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.aborted = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    def abort(self) -> None:
        self.aborted = True


async def drained(body: object) -> bytes:
    assert not isinstance(body, bytes)
    return b"".join([chunk async for chunk in body])  # type: ignore[attr-defined]


def streamed(chunks: list[bytes], declared: int | None) -> Request:
    request = Request("POST", b"/x", [], Stream(chunks), "127.0.0.1", content_length=declared)
    request.path = "/x"
    return request


def test_a_small_streaming_body_is_read_whole() -> None:
    request = streamed([b"ab", b"cd"], None)

    asyncio.run(buffer_body(request, 4))

    assert request.body == b"abcd" and request.content_length == 4


def test_a_declared_body_over_the_bound_is_left_streaming_unread() -> None:
    stream = Stream([b"abcde"])
    request = streamed([], 5)
    request.body = stream

    asyncio.run(buffer_body(request, 4))

    assert request.body is stream and stream.chunks == [b"abcde"]


def test_a_chunked_body_over_the_bound_streams_on_with_nothing_lost() -> None:
    request = streamed([b"abc", b"def", b"gh"], None)

    asyncio.run(buffer_body(request, 4))

    assert not isinstance(request.body, bytes) and request.content_length is None
    assert asyncio.run(drained(request.body)) == b"abcdefgh"
    request.body.abort()
    assert isinstance(request.body, Prefixed) and isinstance(request.body.source, Stream)
    assert request.body.source.aborted
