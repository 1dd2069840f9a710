"""Streaming: a gigabyte goes through the gateway in each direction while its memory stays flat."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]
import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.patterns import pattern_blocks, pattern_sha256
from support.tokens import mint
from support.upstream import Reply

GIB = 1024**3
RSS_CEILING = 150 * 1024 * 1024
SAMPLE_INTERVAL_S = 0.05
STREAM_TIMEOUT_S = 30.0
CHUNKED_UPLOAD_BYTES = 256 * 1024 * 1024
STALLED_TRANSFER_BYTES = 512 * 1024 * 1024
STALL_S = 2.0


class PeakRss:
    """Samples the resident memory of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, self._current())
            self.samples += 1

    def _current(self) -> int:
        total = 0
        with contextlib.suppress(psutil.Error):
            for process in [self.process, *self.process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
        return total

    @contextlib.contextmanager
    def watching(self) -> Iterator[PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


@pytest.fixture(scope="module", autouse=True)
def _warm_pattern_digest() -> None:
    pattern_sha256(GIB)


def test_a_gigabyte_upload_streams_through_with_flat_memory(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Length", str(GIB))]
    with (
        PeakRss(gateway.pid).watching() as rss,
        RawConnection(gateway.port, timeout_s=STREAM_TIMEOUT_S) as connection,
    ):
        connection.send(build_request("PUT", "/api/v1/files/upload", headers))
        for piece in pattern_blocks(GIB, block=bytes(range(256)) * 4096):
            connection.send(piece)
        response = connection.read_response()

    assert response.status == 200, response.body
    received = services["file"].only_request()
    assert received.body_length == GIB
    assert received.body_sha256 == pattern_sha256(GIB)
    assert rss.samples > 0
    assert rss.peak < RSS_CEILING, f"gateway RSS peaked at {rss.peak / 2**20:.0f} MiB"


def test_a_gigabyte_download_streams_through_with_flat_memory(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["file"].respond(Reply(generated_size=GIB, headers=(("Content-Type", "video/mp4"),)))
    digest = hashlib.sha256()
    with (
        PeakRss(gateway.pid).watching() as rss,
        RawConnection(gateway.port, timeout_s=STREAM_TIMEOUT_S) as connection,
    ):
        connection.send(
            build_request("GET", "/api/v1/files/movie", [("Authorization", f"Bearer {mint()}")])
        )
        response = connection.stream_response(digest.update)

    assert response.status == 200
    assert response.header("content-length") == str(GIB)
    assert digest.hexdigest() == pattern_sha256(GIB)
    assert rss.samples > 0
    assert rss.peak < RSS_CEILING, f"gateway RSS peaked at {rss.peak / 2**20:.0f} MiB"


def test_a_chunked_upload_streams_through_with_flat_memory(
    gateway: GatewayProcess, services: Fleet
) -> None:
    size = CHUNKED_UPLOAD_BYTES
    headers = [("Authorization", f"Bearer {mint()}"), ("Transfer-Encoding", "chunked")]
    with (
        PeakRss(gateway.pid).watching() as rss,
        RawConnection(gateway.port, timeout_s=STREAM_TIMEOUT_S) as connection,
    ):
        connection.send(build_request("POST", "/api/v1/files/upload", headers))
        for piece in pattern_blocks(size):
            connection.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.read_response()

    assert response.status == 200, response.body
    received = services["file"].only_request()
    assert (received.body_length, received.body_sha256) == (size, pattern_sha256(size))
    assert rss.peak < RSS_CEILING, f"gateway RSS peaked at {rss.peak / 2**20:.0f} MiB"


def test_a_client_that_stops_reading_does_not_make_the_gateway_buffer_the_download(
    gateway: GatewayProcess, services: Fleet
) -> None:
    size = STALLED_TRANSFER_BYTES
    services["file"].respond(Reply(generated_size=size))
    digest = hashlib.sha256()
    with (
        PeakRss(gateway.pid).watching() as rss,
        RawConnection(gateway.port, timeout_s=STREAM_TIMEOUT_S) as connection,
    ):
        connection.send(
            build_request("GET", "/api/v1/files/big", [("Authorization", f"Bearer {mint()}")])
        )
        time.sleep(STALL_S)  # the client reads nothing while the upstream could send it all
        response = connection.stream_response(digest.update)

    assert response.status == 200
    assert digest.hexdigest() == pattern_sha256(size)
    assert rss.peak < RSS_CEILING, f"gateway RSS peaked at {rss.peak / 2**20:.0f} MiB"


def test_an_upstream_that_reads_slowly_does_not_make_the_gateway_buffer_the_upload(
    gateway: GatewayProcess, services: Fleet
) -> None:
    size = STALLED_TRANSFER_BYTES
    services["file"].pause_before_body_s = STALL_S
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Length", str(size))]
    with (
        PeakRss(gateway.pid).watching() as rss,
        RawConnection(gateway.port, timeout_s=STREAM_TIMEOUT_S) as connection,
    ):
        connection.send(build_request("PUT", "/api/v1/files/upload", headers))
        for piece in pattern_blocks(size):
            connection.send(piece)
        response = connection.read_response()

    assert response.status == 200
    received = services["file"].only_request()
    assert (received.body_length, received.body_sha256) == (size, pattern_sha256(size))
    assert rss.peak < RSS_CEILING, f"gateway RSS peaked at {rss.peak / 2**20:.0f} MiB"
