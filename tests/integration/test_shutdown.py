"""Graceful shutdown on SIGTERM: /ready turns 503, the listener closes, idle connections close,
requests in flight (streams too) finish within the grace period, and the process exits 0."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import IncompleteResponse, RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, launch_gateway
from support.patterns import pattern_blocks, pattern_sha256
from support.upstream import Reply

from api_gateway.http.server import DRAIN_IDLE_GRACE_S

SLOW_S = 2.0
EXIT_BOUND_S = 10.0
PROMPTLY_S = 2.0
# The drain's idle grace, then at most one sweep (a second) more, and a margin.
IDLE_CLOSE_S = DRAIN_IDLE_GRACE_S + 1.0 + PROMPTLY_S
ACCEPTED_S = 0.3
POLL_S = 0.05
DOWNLOAD_BYTES = 32 * 1024 * 1024
UPLOAD_BYTES = 8 * 1024 * 1024
SHORT_GRACE_MS = 1000
# A request cut at the grace period: the worker exits soon after, well before the upstream answers.
CUT_MARGIN_S = 3.0


@contextlib.contextmanager
def gateway_process(
    fleet: Fleet, tmp_path: Path, workers: int = 1, grace_ms: int | None = None
) -> Iterator[GatewayProcess]:
    config = {"server": {"shutdown_grace_ms": grace_ms}} if grace_ms is not None else None
    gateway = launch_gateway(
        tmp_path, fleet.urls(), config=config, extra_args=["--workers", str(workers)]
    )
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


def wait_until_refused(port: int, timeout_s: float = PROMPTLY_S) -> bool:
    """True once a new connection to the port is refused (the listener is closed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(POLL_S)
    return False


def header_has(response_headers: list[tuple[str, str]], name: str, token: str) -> bool:
    return any(k.lower() == name and token in v.lower() for k, v in response_headers)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_a_worker_and_finishes_what_is_in_flight(
    service_fleet: Fleet, tmp_path: Path, workers: int
) -> None:
    upstream = service_fleet["search"]
    with gateway_process(service_fleet, tmp_path, workers) as gateway:
        upstream.reset()
        upstream.respond(Reply(delay_s=SLOW_S), path="/api/v1/search/slow")
        with RawConnection(gateway.port) as busy, RawConnection(gateway.port) as idle:
            idle.send(build_request("GET", "/live"))
            assert idle.read_response().status == 200
            busy.send(build_request("GET", "/api/v1/search/slow"))
            upstream.wait_for_requests(1)

            gateway.process.send_signal(signal.SIGTERM)

            # Not at once: for DRAIN_IDLE_GRACE_S a request already on its way is still answered.
            assert idle.is_closed_by_peer(IDLE_CLOSE_S), "an idle keep-alive connection stayed open"
            assert wait_until_refused(gateway.port), "new connections were still accepted"
            busy.send(build_request("GET", "/ready"))  # behind the request still in flight
            slow = busy.read_response()
            ready = busy.read_response()
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    assert slow.status == 200
    assert slow.json()["target"] == "/api/v1/search/slow"
    assert ready.status == 503
    assert ready.json()["status"] == "draining"
    assert header_has(ready.headers, "connection", "close")
    assert exit_code == 0


def test_a_request_sent_on_an_idle_keep_alive_connection_as_the_drain_begins_is_answered(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    """A client's next request may be on the wire when SIGTERM comes: it gets its answer (with
    ``Connection: close``), not a closed connection."""
    with gateway_process(service_fleet, tmp_path) as gateway:
        with RawConnection(gateway.port) as idle, RawConnection(gateway.port) as probe:
            idle.send(build_request("GET", "/live"))
            assert idle.read_response().status == 200

            gateway.process.send_signal(signal.SIGTERM)
            # The drain has begun once an answer on a connection of its own says it closes.
            deadline = time.monotonic() + EXIT_BOUND_S
            while time.monotonic() < deadline:
                probe.send(build_request("GET", "/live"))
                if header_has(probe.read_response().headers, "connection", "close"):
                    break
                time.sleep(0.01)
            idle.send(build_request("GET", "/api/v1/search/next"))
            answer = idle.read_response()
            closed = idle.is_closed_by_peer(PROMPTLY_S)
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    assert answer.status == 200
    assert answer.json()["target"] == "/api/v1/search/next"
    assert header_has(answer.headers, "connection", "close")
    assert closed
    assert exit_code == 0


def test_a_connection_accepted_before_the_drain_gets_its_first_request_answered(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["search"]
    with gateway_process(service_fleet, tmp_path) as gateway:
        upstream.reset()
        upstream.respond(Reply(delay_s=SLOW_S), path="/api/v1/search/slow")
        with RawConnection(gateway.port) as busy, RawConnection(gateway.port) as fresh:
            busy.send(build_request("GET", "/api/v1/search/slow"))
            upstream.wait_for_requests(1)
            time.sleep(ACCEPTED_S)  # the worker has accepted the fresh connection by now

            gateway.process.send_signal(signal.SIGTERM)
            assert wait_until_refused(gateway.port), "new connections were still accepted"
            fresh.send(build_request("GET", "/live"))  # its first request, after the drain began
            first = fresh.read_response()
            assert fresh.is_closed_by_peer(PROMPTLY_S)
            assert busy.read_response().status == 200
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    assert first.status == 200
    assert header_has(first.headers, "connection", "close")
    assert exit_code == 0


def test_a_streaming_download_in_flight_is_delivered_whole(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["file"]
    digest, received = hashlib.sha256(), 0
    with gateway_process(service_fleet, tmp_path) as gateway:
        upstream.reset()
        upstream.respond(Reply(generated_size=DOWNLOAD_BYTES, chunked=True))

        def sink(piece: bytes) -> None:
            nonlocal received
            if received == 0:
                gateway.process.send_signal(signal.SIGTERM)
                time.sleep(0.3)  # the gateway drains while the body is still on its way
            received += len(piece)
            digest.update(piece)

        with RawConnection(gateway.port) as connection:
            connection.send(build_request("GET", "/api/v1/files/health"))
            response = connection.stream_response(sink)
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    assert response.status == 200
    assert received == DOWNLOAD_BYTES
    assert digest.hexdigest() == pattern_sha256(DOWNLOAD_BYTES)
    assert exit_code == 0


def test_a_streaming_upload_in_flight_reaches_the_service_whole(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    upstream = service_fleet["file"]
    pieces = list(pattern_blocks(UPLOAD_BYTES))
    half = len(pieces) // 2
    with gateway_process(service_fleet, tmp_path) as gateway:
        upstream.reset()
        with RawConnection(gateway.port) as connection:
            head = build_request(
                "POST", "/api/v1/files/health", [("Content-Length", str(UPLOAD_BYTES))]
            )
            connection.send(head + b"".join(pieces[:half]))
            upstream.wait_for_requests(1)
            gateway.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            connection.send(b"".join(pieces[half:]))
            response = connection.read_response()
        exit_code = gateway.process.wait(EXIT_BOUND_S)

    record = upstream.only_request()
    assert response.status == 200
    assert record.body_complete and record.body_length == UPLOAD_BYTES
    assert record.body_sha256 == pattern_sha256(UPLOAD_BYTES)
    assert exit_code == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_longer_than_the_grace_period_is_cut_and_the_process_exits_0(
    service_fleet: Fleet, tmp_path: Path, workers: int
) -> None:
    upstream = service_fleet["search"]
    grace_s = SHORT_GRACE_MS / 1000
    with gateway_process(service_fleet, tmp_path, workers, SHORT_GRACE_MS) as gateway:
        upstream.reset()
        upstream.respond(Reply(delay_s=grace_s + 2 * CUT_MARGIN_S))
        with RawConnection(gateway.port) as connection:
            connection.send(build_request("GET", "/api/v1/search/endless"))
            upstream.wait_for_requests(1)
            started = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            with pytest.raises((IncompleteResponse, OSError)):
                connection.read_response()
        exit_code = gateway.process.wait(EXIT_BOUND_S)
        elapsed = time.monotonic() - started

    assert exit_code == 0
    assert grace_s * 0.9 <= elapsed < grace_s + CUT_MARGIN_S


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2])
def test_sigterm_while_the_workers_start_is_a_clean_stop(
    service_fleet: Fleet, tmp_path: Path, delay_s: float
) -> None:
    """A rollout may stop a gateway that is still starting: that is a stop, not a failed start
    (exit 0, no "did not start"). Counted from the first worker's fork (the supervisor handles
    SIGTERM from then on), the delays land before and while the workers listen; each must end
    the same way."""
    gateway = launch_gateway(tmp_path, service_fleet.urls(), extra_args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 30
        while not gateway.workers() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay_s)
        gateway.process.send_signal(signal.SIGTERM)
        exit_code = gateway.process.wait(30)
    finally:
        gateway.stop()
    assert exit_code == 0, gateway.output()[-2000:]
    assert "did not start" not in gateway.output()
