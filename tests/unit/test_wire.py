"""Wire rendering: header lines and chunks."""

from __future__ import annotations

from api_gateway.http.wire import LAST_CHUNK, add_header_lines, chunk, header_lines


def test_header_lines() -> None:
    headers = [(b"content-type", b"text/plain"), (b"x-a", b"")]
    assert header_lines(headers) == b"content-type: text/plain\r\nx-a: \r\n"
    assert header_lines([]) == b""


def test_header_lines_are_appended_as_pieces() -> None:
    parts = [b"HTTP/1.1 200 OK\r\n"]
    add_header_lines(parts, [(b"a", b"1")])
    assert parts == [b"HTTP/1.1 200 OK\r\n", b"a", b": ", b"1", b"\r\n"]


def test_chunks_carry_their_size_in_hex() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255).startswith(b"ff\r\n")
    assert chunk(b"x" * 4096)[:5] == b"1000\r"
    assert LAST_CHUNK == b"0\r\n\r\n"
