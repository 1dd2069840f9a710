"""Free TCP ports and ports that are certainly closed."""

from __future__ import annotations

import collections
import socket

# A port handed out is bound later, by the process it is meant for: until then the kernel may
# give the same port to the next bind to port 0 (CI once saw a gateway's traffic and admin
# ports equal). So the last ports handed out are never handed out again; a port this many
# calls old has long been bound, or let go by a test that is over.
RECENT = 1024
_recent: collections.deque[int] = collections.deque(maxlen=RECENT)


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _recent:
            _recent.append(port)
            return port


def closed_port_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens (the port was just released)."""
    return f"http://127.0.0.1:{free_port()}"
