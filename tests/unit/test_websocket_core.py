"""The pure WebSocket pieces: handshake recognition and checks, frame boundaries, the close
frame, and the open-tunnel counts."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import BadRequest, RateLimited, ServiceUnavailable
from api_gateway.types import Headers, Request
from api_gateway.websocket import (
    NOT_AN_UPGRADE,
    OTHER_PROTOCOL,
    WEBSOCKET,
    FrameBoundary,
    OpenTunnels,
    check_handshake,
    close_frame,
    upgrade_kind,
)

KEY = base64.b64encode(os.urandom(16))


def handshake(*extra: tuple[bytes, bytes], method: str = "GET", drop: bytes = b"") -> Request:
    headers: Headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]
    headers = [h for h in headers if h[0] != drop]
    return Request(method, b"/api/v1/queue/live", headers, b"", "10.0.0.1")


def test_upgrade_kinds() -> None:
    assert upgrade_kind(handshake()) == WEBSOCKET
    assert upgrade_kind(handshake(drop=b"upgrade")) == NOT_AN_UPGRADE
    assert upgrade_kind(handshake(drop=b"connection")) == NOT_AN_UPGRADE
    h2c = Request(
        "GET", b"/", [(b"upgrade", b"h2c"), (b"connection", b"Upgrade, HTTP2-Settings")], b"", ""
    )
    assert upgrade_kind(h2c) == OTHER_PROTOCOL


def test_a_well_formed_handshake_passes() -> None:
    check_handshake(handshake())


@pytest.mark.parametrize(
    "request_",
    [
        handshake(method="POST"),
        handshake(drop=b"sec-websocket-key"),
        handshake((b"sec-websocket-key", KEY)),  # two keys
        handshake(drop=b"sec-websocket-version"),
        handshake((b"transfer-encoding", b"chunked")),
    ],
)
def test_malformed_handshakes_are_400(request_: Request) -> None:
    with pytest.raises(BadRequest):
        check_handshake(request_)


def test_a_wrong_version_is_told_the_one_spoken() -> None:
    request = handshake(drop=b"sec-websocket-version")
    request.headers.append((b"sec-websocket-version", b"8"))
    with pytest.raises(BadRequest) as refused:
        check_handshake(request)
    assert (b"sec-websocket-version", b"13") in refused.value.headers


def test_a_key_that_is_not_16_bytes_is_refused() -> None:
    request = handshake(drop=b"sec-websocket-key")
    request.headers.append((b"sec-websocket-key", base64.b64encode(b"short")))
    with pytest.raises(BadRequest):
        check_handshake(request)


def test_close_frame_is_an_unmasked_close_with_its_code() -> None:
    frame = close_frame(1001, b"going away")
    assert frame[0] == 0x88 and frame[1] == 2 + len(b"going away")
    assert struct.unpack("!H", frame[2:4]) == (1001,)


def frame(payload_length: int, masked: bool) -> bytes:
    first = b"\x82"
    mask = 0x80 if masked else 0
    if payload_length < 126:
        head = first + bytes((mask | payload_length,))
    elif payload_length < 65536:
        head = first + bytes((mask | 126,)) + struct.pack("!H", payload_length)
    else:
        head = first + bytes((mask | 127,)) + struct.pack("!Q", payload_length)
    return head + (b"MASK" if masked else b"") + b"x" * payload_length


@given(
    st.lists(st.tuples(st.sampled_from([0, 1, 125, 126, 300, 65535, 65536]), st.booleans())),
    st.lists(st.integers(min_value=1, max_value=70000), max_size=8),
)
def test_boundaries_are_found_however_the_bytes_are_cut(
    frames: list[tuple[int, bool]], cuts: list[int]
) -> None:
    stream = b"".join(frame(length, masked) for length, masked in frames)
    ends = set()
    at = 0
    for length, masked in frames:
        at += len(frame(length, masked))
        ends.add(at)
    boundary = FrameBoundary()
    position = 0
    for cut in sorted({min(c, len(stream)) for c in cuts} | {len(stream)}):
        boundary.feed(stream[position:cut])
        position = cut
        assert boundary.at_boundary == (cut in ends or cut == 0), cut
    assert boundary.at_boundary


def test_open_tunnels_are_bounded_per_user_and_per_worker() -> None:
    tunnels = OpenTunnels(max_per_worker=3)
    first = tunnels.acquire("user:a", 2)
    tunnels.acquire("user:a", 2)
    with pytest.raises(RateLimited):
        tunnels.acquire("user:a", 2)
    tunnels.acquire("user:b", 2)
    with pytest.raises(ServiceUnavailable):
        tunnels.acquire("user:c", 2)
    first.release()
    first.release()  # a second release changes nothing
    assert tunnels.total == 2 and tunnels.by_user == {"user:a": 1, "user:b": 1}
    tunnels.acquire("user:c", 2)
