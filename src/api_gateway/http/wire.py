"""HTTP/1.1 wire rendering shared by the server and the client: header lines and chunks.

    add_header_lines(parts, headers)   # appends name, b": ", value, b"\\r\\n" per field
    header_lines(headers)              # the same as one bytes object
    chunk(data)                        # b"<hex size>\\r\\n<data>\\r\\n"
    LAST_CHUNK                         # b"0\\r\\n\\r\\n": the end of a chunked body (no trailers)

Heads are built as a list of pieces joined once, each field's pieces appended one by one
(``COMPILED.md`` §7): a bytes object per field would be built only to be copied again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # Types only: ``types.py`` may import its header-line renderer from here without a cycle.
    from api_gateway.types import Headers

CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"


def add_header_lines(parts: list[bytes], headers: Headers) -> None:
    for name, value in headers:
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")


def header_lines(headers: Headers) -> bytes:
    """Headers in wire form: ``name: value\\r\\n`` each."""
    parts: list[bytes] = []
    add_header_lines(parts, headers)
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; ``data`` must not be empty (that is the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data)
