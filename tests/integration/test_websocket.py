"""WebSocket through the gateway, with the real ``websockets`` library on both sides: the
handshake passes the route's whole chain, then bytes flow both ways until either side closes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawConnection
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text
from support.tokens import mint
from support.ws_upstream import WebSocketUpstream
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

QUEUE = "/api/v1/queue/live"
IDLE = "/api/v1/monitoring/live"  # websocket_idle_timeout_ms: 1000, two per user
REFUSING = "/api/v1/notifications/live"  # websocket: false


@pytest.fixture(scope="module")
def upstream() -> Iterator[WebSocketUpstream]:
    server = WebSocketUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "routes": {
            "/monitoring": {"websocket_idle_timeout_ms": 1000, "websocket_max_per_user": 2},
            "/notifications": {"websocket": False},
        }
    }


@pytest.fixture(scope="module")
def gateway(
    service_fleet: Fleet,
    module_dir: Path,
    gateway_config: dict[str, Any],
    upstream: WebSocketUpstream,
) -> Iterator[GatewayProcess]:
    urls = service_fleet.urls()
    for service in ("queue", "monitoring", "notification"):
        urls[service] = upstream.url
    with running_gateway(module_dir, urls, gateway_config, {}) as process:
        yield process


def ws(gateway: GatewayProcess, path: str = QUEUE, token: str | None = None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token or mint()}"}
    return connect(
        f"ws://127.0.0.1:{gateway.port}{path}",
        additional_headers=headers,
        max_size=4 * 1024 * 1024,
        open_timeout=5,
        close_timeout=5,
    )


@pytest.mark.parametrize("size", [1, 125, 126, 65535, 65536, 1024 * 1024])
def test_text_and_binary_messages_echo_through(gateway: GatewayProcess, size: int) -> None:
    with ws(gateway) as connection:
        text = "é" * (size // 2) or "x"
        connection.send(text)
        assert connection.recv(timeout=10) == text
        data = os.urandom(size)
        connection.send(data)
        assert connection.recv(timeout=10) == data


def test_a_thousand_messages_in_a_row(gateway: GatewayProcess) -> None:
    with ws(gateway) as connection:
        for n in range(1000):
            connection.send(f"message {n}")
        received = [connection.recv(timeout=10) for _ in range(1000)]
    assert received == [f"message {n}" for n in range(1000)]


def test_ping_gets_its_pong(gateway: GatewayProcess) -> None:
    with ws(gateway) as connection:
        assert connection.ping(b"are you there").wait(5)


@pytest.mark.parametrize("code", [1000, 1001, 1008, 4001])
def test_close_codes_pass_through_both_ways(
    gateway: GatewayProcess, upstream: WebSocketUpstream, code: int
) -> None:
    closed_before = len(upstream.recorded.close_codes)
    with ws(gateway) as connection:
        connection.close(code, "bye")
    assert upstream.wait_close_code(code, since=closed_before)

    with ws(gateway) as connection:
        connection.send(f"close:{code if code != 1001 else 4999}")
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == (code if code != 1001 else 4999)
    # The upstream records its own close when its handshake ends: waited for here, so that the
    # record lands in this test.
    assert upstream.wait_close_code(closed.value.rcvd.code, since=closed_before + 1)


def test_the_upstream_handshake_carries_the_identity(
    gateway: GatewayProcess, upstream: WebSocketUpstream
) -> None:
    token = mint(sub="fan-9", tenant_id="tenant-9")
    with ws(gateway, token=token) as connection:
        connection.send("hi")
        connection.recv(timeout=5)
    headers = upstream.recorded.handshakes[-1]
    assert headers.get_all("x-user-id") == ["fan-9"]
    assert headers.get_all("x-tenant-id") == ["tenant-9"]
    assert headers.get_all("x-auth-method") == ["jwt"]
    assert headers["Upgrade"].lower() == "websocket"


def test_a_browser_may_send_its_token_in_the_query(
    gateway: GatewayProcess, upstream: WebSocketUpstream
) -> None:
    token = mint(sub="browser-1")
    url = f"ws://127.0.0.1:{gateway.port}{QUEUE}?position=1&access_token={token}"
    with connect(url, open_timeout=5) as connection:
        connection.send("hi")
        assert connection.recv(timeout=5) == "hi"
    assert upstream.recorded.paths[-1] == "/api/v1/queue/live?position=1"
    assert upstream.recorded.handshakes[-1].get_all("x-user-id") == ["browser-1"]
    assert token not in gateway.output()


def test_a_handshake_without_a_token_never_reaches_the_upstream(
    gateway: GatewayProcess, upstream: WebSocketUpstream
) -> None:
    seen = len(upstream.recorded.handshakes)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{gateway.port}{QUEUE}", open_timeout=5)
    assert refused.value.response.status_code == 401
    time.sleep(0.2)
    assert len(upstream.recorded.handshakes) == seen


def test_a_route_may_refuse_websockets(
    gateway: GatewayProcess, upstream: WebSocketUpstream
) -> None:
    seen = len(upstream.recorded.handshakes)
    with pytest.raises(InvalidStatus) as refused:
        ws(gateway, REFUSING)
    assert refused.value.response.status_code == 400
    assert len(upstream.recorded.handshakes) == seen


def test_an_idle_websocket_is_closed(gateway: GatewayProcess) -> None:
    with ws(gateway, IDLE) as connection:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            connection.recv(timeout=10)
        assert 0.8 <= time.monotonic() - started < 5


def test_traffic_keeps_a_websocket_open_past_the_idle_timeout(gateway: GatewayProcess) -> None:
    with ws(gateway, IDLE) as connection:
        for n in range(6):  # 1.8 s in all, more than the 1 s idle timeout
            connection.send(str(n))
            assert connection.recv(timeout=5) == str(n)
            time.sleep(0.3)


def test_open_websockets_per_user_are_capped(gateway: GatewayProcess) -> None:
    token = mint(sub="hoarder")
    with ws(gateway, IDLE, token), ws(gateway, IDLE, token):
        with pytest.raises(InvalidStatus) as refused:
            ws(gateway, IDLE, token)
        assert refused.value.response.status_code == 429
        with ws(gateway, IDLE, mint(sub="someone-else")) as other:  # others are not affected
            other.send("x")
            assert other.recv(timeout=5) == "x"


def handshake_head(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: gateway",
        f"Authorization: Bearer {mint()}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "head",
    [
        handshake_head(QUEUE, "Sec-WebSocket-Version: 13"),
        handshake_head(
            QUEUE, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8"
        ),
        handshake_head(
            QUEUE,
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Content-Length: 0",
            method="POST",
        ),
    ],
)
def test_malformed_handshakes_are_400(
    gateway: GatewayProcess, upstream: WebSocketUpstream, head: bytes
) -> None:
    seen = len(upstream.recorded.handshakes)
    with RawConnection(gateway.port) as connection:
        connection.send(head)
        assert_problem(connection.read_response(), 400)
    assert len(upstream.recorded.handshakes) == seen


def test_another_protocol_is_served_as_plain_http(gateway: GatewayProcess, services: Fleet) -> None:
    head = (
        "GET /api/v1/events/1 HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {mint()}\r\nUpgrade: h2c\r\n"
        "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    with RawConnection(gateway.port) as connection:
        connection.send(head.encode())
        response = connection.read_response()
    assert response.status == 200
    seen = services["event"].only_request()
    assert seen.header_values("upgrade") == []


def test_sigterm_sends_going_away_to_open_websockets(
    service_fleet: Fleet, tmp_path: Path, upstream: WebSocketUpstream
) -> None:
    urls = {**service_fleet.urls(), "queue": upstream.url}
    config = {"server": {"shutdown_grace_ms": 300}}
    with running_gateway(tmp_path, urls, config, {}) as gateway, ws(gateway) as connection:
        connection.send("hello")
        assert connection.recv(timeout=5) == "hello"
        os.kill(gateway.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_the_upstream_going_away_closes_the_client(service_fleet: Fleet, tmp_path: Path) -> None:
    doomed = WebSocketUpstream().start()
    urls = {**service_fleet.urls(), "queue": doomed.url}
    try:
        with running_gateway(tmp_path, urls, None, {}) as gateway, ws(gateway) as connection:
            connection.send("hello")
            assert connection.recv(timeout=5) == "hello"
            doomed.stop()
            with pytest.raises(ConnectionClosed):
                connection.recv(timeout=10)
    finally:
        doomed.stop()


def test_an_upstream_answering_200_to_a_handshake_is_relayed_as_a_response(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    plain = WebSocketUpstream(refuse_with=403).start()
    urls = {**service_fleet.urls(), "queue": plain.url}
    try:
        with running_gateway(tmp_path, urls, None, {}) as gateway:
            with pytest.raises(InvalidStatus) as refused:
                ws(gateway)
            assert refused.value.response.status_code == 403
    finally:
        plain.stop()


def queue_bytes_out(metrics: str) -> float:
    for line in metrics.splitlines():
        if (
            line.startswith("gateway_websocket_bytes_total")
            and 'route="/api/v1/queue"' in line
            and "upstream_to_client" in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_websockets_are_counted_in_the_metrics(gateway: GatewayProcess) -> None:
    before = queue_bytes_out(metrics_text(gateway))
    data = os.urandom(5000)  # random: permessage-deflate cannot shrink it
    with ws(gateway) as connection:
        connection.send(data)
        assert connection.recv(timeout=5) == data
        during = metrics_text(gateway)
        assert 'gateway_websockets_open{route="/api/v1/queue",worker="0"} 1' in during
    deadline = time.monotonic() + 5
    after = ""
    while time.monotonic() < deadline:
        after = metrics_text(gateway)
        if 'gateway_websockets_open{route="/api/v1/queue",worker="0"} 0' in after:
            break
        time.sleep(0.05)
    assert 'gateway_websockets_open{route="/api/v1/queue",worker="0"} 0' in after
    assert 'gateway_websocket_handshakes_total{route="/api/v1/queue",result="switched"}' in after
    assert 5000 <= queue_bytes_out(after) - before < 6000


def log_lines(gateway: GatewayProcess, path: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in gateway.output().splitlines()
        if line.startswith("{") and f'"path":"{path}"' in line and '"outcome"' in line
    ]


def test_a_websocket_is_logged_when_it_closes_with_its_bytes_and_reason(
    gateway: GatewayProcess,
) -> None:
    path = "/api/v1/queue/logged"
    data = os.urandom(500)  # random: permessage-deflate cannot shrink it
    with ws(gateway, path) as connection:
        connection.send(data)
        assert connection.recv(timeout=5) == data
        assert log_lines(gateway, path) == []  # nothing until it closes
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not log_lines(gateway, path):
        time.sleep(0.05)
    (line,) = log_lines(gateway, path)
    assert line["status"] == 101
    # The client began the closing handshake; the upstream, as a server does, then closes TCP.
    assert line["outcome"] == "upstream_closed"
    assert line["bytes_in"] >= 500 and line["bytes_out"] >= 500


def masked_text_frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return bytes((0x81, 0x80 | len(text))) + mask + payload


def test_frames_sent_before_the_101_are_relayed_after_it(gateway: GatewayProcess) -> None:
    head = (
        f"GET {QUEUE} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {mint()}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(head + masked_text_frame(b"early"))  # before any answer
        received = b""
        while b"early" not in received:
            piece = sock.recv(65536)
            assert piece, received
            received += piece
    assert received.startswith(b"HTTP/1.1 101 ")
    assert received.endswith(b"\x81\x05early")  # the echo, an unmasked server frame
