"""A small OTLP/HTTP trace collector for the tracing rows (run as a script, one process).

``POST /v1/traces`` reads the body, counts the export and its bytes, and answers 200 with an
empty ``ExportTraceServiceResponse`` (an empty protobuf message is zero bytes). ``GET /stats``
answers ``{"exports": n, "bytes": m}``; any other GET answers 200 (readiness).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counts:
    lock = threading.Lock()
    exports = 0
    bytes = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size)
        with Counts.lock:
            Counts.exports += 1
            Counts.bytes += len(body)
        self.answer(200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        stats = {"exports": Counts.exports, "bytes": Counts.bytes}
        self.answer(200, json.dumps(stats).encode(), "application/json")

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per export would be noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Sink).serve_forever()


if __name__ == "__main__":
    main()
