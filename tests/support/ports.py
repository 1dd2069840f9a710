"""Free TCP ports and ports that are certainly closed."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens (the port was just released)."""
    return f"http://127.0.0.1:{free_port()}"
