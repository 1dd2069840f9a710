"""A JWKS endpoint on 127.0.0.1: a real HTTP server whose answer the test sets and changes.

It serves a document (a JWKS made with ``support.keypairs``, or any bytes) at every path, with
an optional ``Cache-Control``, framed by Content-Length, chunked or by closing the connection;
or it answers another status, or hangs (reads the request, answers nothing) until released.
Every request is counted. It can be created on a port it does not listen on yet (``start``
later): an endpoint unreachable at first, then up.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.ports import free_port

HANG_LIMIT_S = 30.0  # a hanging answer ends by itself after this, whatever the test does
WAIT_STEP_S = 0.01
CHUNK_SIZE = 4096


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"keys": []}'
    cache_control: str | None = None
    framing: str = "length"  # "length", "chunked", or "close" (no length: ends at the close)
    hang: bool = False
    delay_s: float = 0.0
    extra_headers: tuple[tuple[str, str], ...] = ()


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "jwks-cert.pem", directory / "jwks-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class JwksServer:
    def __init__(self, port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls  # serve https with this server-side context
        self.answer = Answer()
        self.hits = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/.well-known/jwks.json"

    # What it answers.
    def serve(self, *entries: dict[str, Any], cache_control: str | None = None) -> None:
        """A JWKS of these entries, with 200 and the given Cache-Control."""
        self.answer = Answer(
            body=json.dumps({"keys": list(entries)}).encode(), cache_control=cache_control
        )

    def serve_raw(self, body: bytes, status: int = 200, **answer: Any) -> None:
        self.answer = Answer(status=status, body=body, **answer)

    def hang(self) -> None:
        """Read requests, answer none until ``unhang`` (or HANG_LIMIT_S)."""
        self.release.clear()
        self.answer = Answer(hang=True)

    def unhang(self) -> None:
        self.release.set()

    # Counting.
    def count(self) -> int:
        with self.lock:
            return self.hits

    def wait_for_hits(self, count: int, timeout_s: float = 10.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.count() < count and time.monotonic() < deadline:
            time.sleep(WAIT_STEP_S)
        return self.count()

    def record(self, path: str) -> Answer:
        with self.lock:
            self.hits += 1
            self.paths.append(path)
            return self.answer

    # Running.
    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.respond(self, owner.record(self.path))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            # The handshake happens in the connection's own thread, not in the accepting one.
            server.socket = self.tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def respond(self, handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        handler.close_connection = True
        if answer.hang:
            self.release.wait(HANG_LIMIT_S)
            return
        if answer.delay_s:
            time.sleep(answer.delay_s)
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        if answer.cache_control is not None:
            handler.send_header("Cache-Control", answer.cache_control)
        for name, value in answer.extra_headers:
            handler.send_header(name, value)
        body = answer.body
        if answer.framing == "length":
            handler.send_header("Content-Length", str(len(body)))
        elif answer.framing == "chunked":
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        with contextlib.suppress(OSError):  # the gateway may hang up on an oversize body
            if answer.framing == "chunked":
                for start in range(0, len(body), CHUNK_SIZE):
                    chunk = body[start : start + CHUNK_SIZE]
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.write(b"0\r\n\r\n")
            else:
                handler.wfile.write(body)
            handler.wfile.flush()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> JwksServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
