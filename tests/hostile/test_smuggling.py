"""Request smuggling and framing: every ambiguous or malformed message is refused (or read one
way only), a canary sent after it on the same socket is answered as itself or the socket is
closed, and no upstream ever receives a request the gateway did not build."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from support.canary import CANARY_TARGET, assert_canary_safe, exchange, targets_seen
from support.client import build_request
from support.gateway import Fleet, GatewayProcess

PUBLIC = "/api/v1/search/q"  # public, so authentication plays no part
PROTECTED = "/api/v1/tickets/1"
SMUGGLED = b"GET /api/v1/search/smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def post(headers: str, body: bytes = b"", target: str = PUBLIC, version: str = "1.1") -> bytes:
    head = f"POST {target} HTTP/{version}\r\nHost: gateway.test\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def chunked(body: bytes, size: bytes | None = None) -> bytes:
    return (size or b"%x" % len(body)) + b"\r\n" + body + b"\r\n0\r\n\r\n"


@dataclass(frozen=True)
class Case:
    raw: bytes
    status: int
    forwarded: tuple[str, ...] = ()  # the targets the upstreams may see, besides the canary
    # A framing error ends the connection; a refusal of a well-framed request need not.
    closes: bool | None = None

    @property
    def must_close(self) -> bool:
        return self.status == REFUSED if self.closes is None else self.closes


REFUSED = 400
CASES = {
    # CL.TE and TE.CL: both framings present, in either order and with either one "right".
    "cl-te": Case(
        post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        REFUSED,
    ),
    "te-cl": Case(
        post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", chunked(SMUGGLED)), REFUSED
    ),
    "cl-0-te": Case(
        post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        REFUSED,
    ),
    # Obfuscated Transfer-Encoding.
    "te-trailing-space-with-cl": Case(
        post("Transfer-Encoding: chunked \r\nContent-Length: 5\r\n", b"0\r\n\r\n"), REFUSED
    ),
    "te-vertical-tab": Case(post("Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), REFUSED),
    "te-xchunked": Case(
        post(
            f"Transfer-Encoding: xchunked\r\nContent-Length: {len(SMUGGLED) + 5}\r\n",
            b"0\r\n\r\n" + SMUGGLED,
        ),
        REFUSED,
    ),
    "te-quoted": Case(post('Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), REFUSED),
    "te-list-gzip-chunked": Case(
        post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), REFUSED
    ),
    "te-list-chunked-chunked": Case(
        post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), REFUSED
    ),
    "te-leading-comma": Case(post("Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"), REFUSED),
    "te-duplicate-headers": Case(
        post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"), REFUSED
    ),
    "te-space-before-colon": Case(post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), REFUSED),
    "te-underscore-name-with-cl": Case(
        post("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
        REFUSED,
        closes=False,
    ),
    "te-http-1.0": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello"), version="1.0"), REFUSED
    ),
    "te-cl-http-1.0": Case(
        post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"hello", version="1.0"),
        REFUSED,
    ),
    # Content-Length.
    "cl-duplicate-same": Case(
        post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), REFUSED
    ),
    "cl-duplicate-different": Case(
        post("Content-Length: 5\r\nContent-Length: 0\r\n", b"hello"), REFUSED
    ),
    "cl-list": Case(post("Content-Length: 5, 5\r\n", b"hello"), REFUSED),
    "cl-plus": Case(post("Content-Length: +5\r\n", b"hello"), REFUSED),
    "cl-negative": Case(post("Content-Length: -5\r\n", b"hello"), REFUSED),
    "cl-hex": Case(post("Content-Length: 0x5\r\n", b"hello"), REFUSED),
    "cl-exponent": Case(post("Content-Length: 5e0\r\n", b"hello"), REFUSED),
    "cl-overflow": Case(post("Content-Length: 99999999999999999999999\r\n", b"hello"), REFUSED),
    "cl-leading-zeros": Case(post("Content-Length: 005\r\n", b"hello"), 200, (PUBLIC,)),
    # Chunk sizes and extensions.
    "chunk-size-text": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"zz")), REFUSED
    ),
    "chunk-size-negative": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"-5")), REFUSED
    ),
    "chunk-size-0x": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"0x5")), REFUSED
    ),
    "chunk-size-overflow": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"1" + b"0" * 17)), REFUSED
    ),
    "chunk-size-space": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"5 ")), REFUSED
    ),
    "chunk-ext-space-before": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"5 ;a=b")), REFUSED
    ),
    "chunk-ext-bare-lf": Case(
        post("Transfer-Encoding: chunked\r\n", b"5;a\nhello\r\n0\r\n\r\n"), REFUSED
    ),
    "chunk-size-bare-lf": Case(
        post("Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"), REFUSED
    ),
    "last-chunk-bare-lf": Case(
        post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\n\n"), REFUSED
    ),
    "chunk-longer-than-size": Case(
        post("Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n"), REFUSED
    ),
    "chunk-ext-valid": Case(
        post("Transfer-Encoding: chunked\r\n", chunked(b"hello", b"5;name=value")), 200, (PUBLIC,)
    ),
    "chunked-smuggle-after-last-chunk": Case(
        post("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        200,
        (PUBLIC, "/api/v1/search/smuggled"),
    ),
    # Line endings, folding and names.
    "bare-lf-everywhere": Case(f"GET {PUBLIC} HTTP/1.1\nHost: gateway.test\n\n".encode(), REFUSED),
    "bare-lf-after-header": Case(
        f"GET {PUBLIC} HTTP/1.1\r\nHost: gateway.test\nX-A: b\r\n\r\n".encode(), REFUSED
    ),
    "bare-cr-in-value": Case(post("X-A: a\rb\r\nContent-Length: 0\r\n"), REFUSED),
    "bare-cr-line-end": Case(f"GET {PUBLIC} HTTP/1.1\rHost: gateway.test\r\r".encode(), REFUSED),
    "obs-fold": Case(post("X-A: a\r\n folded\r\nContent-Length: 0\r\n"), REFUSED),
    "obs-fold-of-te": Case(
        post("X-A: a\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), REFUSED
    ),
    "name-with-space": Case(post("Content Length: 5\r\n", b"hello"), REFUSED),
    "name-with-paren": Case(post("X(A): 1\r\nContent-Length: 0\r\n"), REFUSED),
    "name-non-ascii": Case(post("X-\xff: 1\r\nContent-Length: 0\r\n"), REFUSED),
    "name-empty": Case(post(": 1\r\nContent-Length: 0\r\n"), REFUSED),
    "value-nul": Case(post("X-A: a\x00b\r\nContent-Length: 0\r\n"), REFUSED),
    "value-del": Case(post("X-A: a\x7fb\r\nContent-Length: 0\r\n"), REFUSED),
    # Versions and request lines.
    "http-0.9": Case(f"GET {PUBLIC}\r\n\r\n".encode(), REFUSED),
    "http-1.2": Case(f"GET {PUBLIC} HTTP/1.2\r\nHost: gateway.test\r\n\r\n".encode(), REFUSED),
    "http-2-preface": Case(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REFUSED),
    "lower-case-method": Case(
        f"get {PUBLIC} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode(), REFUSED
    ),
    "leading-empty-lines": Case(b"\r\n\r\n" + build_request("GET", PUBLIC), 200, (PUBLIC,)),
    # Early responses: a refusal answered before its body, whose body is another request.
    "early-401-content-length": Case(build_request("POST", PROTECTED, body=SMUGGLED), 401),
    "early-401-chunked": Case(
        build_request("POST", PROTECTED, [("Transfer-Encoding", "chunked")]) + chunked(SMUGGLED),
        401,
    ),
    "early-404-content-length": Case(build_request("POST", "/api/v1/nowhere", body=SMUGGLED), 404),
    "early-413-declared": Case(
        build_request("POST", PUBLIC, [("Content-Length", str(1 << 40))]) + SMUGGLED, 413
    ),
    "early-401-expect": Case(
        build_request(
            "POST", PROTECTED, [("Expect", "100-continue"), ("Content-Length", str(len(SMUGGLED)))]
        )
        + SMUGGLED,
        401,
    ),
    "get-with-body": Case(build_request("GET", PUBLIC, body=SMUGGLED), 200, (PUBLIC,)),
    # Protocol switches: whatever follows is never parsed as a request. A WebSocket handshake
    # without its key is refused (400) before any upstream hears of it; another protocol is
    # served as plain HTTP/1.1, and the connection ends after it.
    "upgrade-then-request": Case(
        build_request("GET", PUBLIC, [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        + SMUGGLED,
        400,
    ),
    "h2c-upgrade-then-request": Case(
        build_request("GET", PUBLIC, [("Upgrade", "h2c"), ("Connection", "Upgrade")]) + SMUGGLED,
        200,
        (PUBLIC,),
    ),
    "connect-then-request": Case(
        f"CONNECT {PUBLIC} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode() + SMUGGLED, 405
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_hostile_message_is_answered_once_and_smuggles_nothing(
    gateway: GatewayProcess, services: Fleet, case: Case
) -> None:
    result = exchange(gateway.port, case.raw)

    assert result.first.status == case.status, result.first.body
    assert_canary_safe(result)
    if case.must_close:
        assert result.closed, "the connection stayed open after a framing error"
    seen = targets_seen(services)
    assert set(seen) <= {*case.forwarded, CANARY_TARGET}, seen
    if "/api/v1/search/smuggled" not in case.forwarded:
        assert "/api/v1/search/smuggled" not in seen


PIPELINE = [f"/api/v1/search/p{i}" for i in range(5)]


def test_pipelined_requests_are_answered_in_order_then_the_canary(
    gateway: GatewayProcess, services: Fleet
) -> None:
    raw = b"".join(build_request("GET", target) for target in PIPELINE)

    result = exchange(gateway.port, raw, answers=len(PIPELINE))

    assert [r.json()["target"] for r in result.responses] == PIPELINE
    assert result.canary is not None
    assert targets_seen(services) == [*PIPELINE, CANARY_TARGET]


def test_a_pipeline_cut_by_a_framing_error_answers_nothing_after_it(
    gateway: GatewayProcess, services: Fleet
) -> None:
    raw = build_request("GET", PIPELINE[0]) + post("Content-Length: 1, 2\r\n", b"ab") + SMUGGLED

    result = exchange(gateway.port, raw, answers=2)

    # The request before the error may be answered or dropped with the connection (the parser
    # saw both in one read): either way nothing after the error is.
    assert [r.status for r in result.responses] in ([200, 400], [400])
    assert result.closed and result.canary is None
    assert set(targets_seen(services)) <= {PIPELINE[0]}


def test_trailer_fields_never_become_request_headers(
    gateway: GatewayProcess, services: Fleet
) -> None:
    trailers = b"Host: evil.example\r\nX-Injected: yes\r\n"
    raw = post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")

    result = exchange(gateway.port, raw)

    assert result.first.status == 200
    assert_canary_safe(result)
    forwarded = services["search"].wait_for_requests(1)[0]
    assert forwarded.body == b"hello"
    assert forwarded.header("x-injected") is None
    assert forwarded.header_values("x-forwarded-host") == ["gateway.test"]
