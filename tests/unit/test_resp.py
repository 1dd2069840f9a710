"""The Redis store's RESP2 codec: commands out, replies in, however the bytes arrive."""

from __future__ import annotations

import time

import pytest

from api_gateway.resp.connection import parse_url
from api_gateway.resp.protocol import (
    ProtocolError,
    Reply,
    RespError,
    RespParser,
    encode_command,
)

# One stream holding every reply shape, and what it must parse to.
STREAM = (
    b"+OK\r\n"
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    b":42\r\n"
    b":-7\r\n"
    b"$5\r\nhello\r\n"
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b"$6\r\nab\r\ncd\r\n"  # a payload with CRLF inside
    b"$2\r\n\r\n\r\n"  # a payload that is only CRLF
    b"$2\r\nx\r\r\n"  # a payload ending in CR
    b"*4\r\n:1\r\n:4\r\n:0\r\n:12001\r\n"
    b"*0\r\n"
    b"*-1\r\n"
    b"*3\r\n*2\r\n:1\r\n$1\r\na\r\n*-1\r\n*1\r\n-ERR inner\r\n"
    b"*2\r\n$-1\r\n+\xc3\xa9t\xc3\xa9\r\n"
)
EXPECTED: list[Reply] = [
    "OK",
    RespError("NOSCRIPT No matching script. Please use EVAL."),
    42,
    -7,
    b"hello",
    b"",
    None,
    b"ab\r\ncd",
    b"\r\n",
    b"x\r",
    [1, 4, 0, 12001],
    [],
    None,
    [[1, b"a"], None, [RespError("ERR inner")]],
    [None, "été"],
]


def test_a_stream_of_every_reply_shape_parses_in_order() -> None:
    assert RespParser().feed(STREAM) == EXPECTED


def test_split_at_every_byte_offset_gives_the_same_replies() -> None:
    for cut in range(len(STREAM) + 1):
        parser = RespParser()
        replies = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert replies == EXPECTED, f"split at byte {cut}"


def test_byte_by_byte_gives_the_same_replies() -> None:
    parser = RespParser()
    replies: list[Reply] = []
    for offset in range(len(STREAM)):
        replies += parser.feed(STREAM[offset : offset + 1])
    assert replies == EXPECTED


def test_nothing_comes_out_until_a_reply_is_complete() -> None:
    parser = RespParser()
    assert parser.feed(b"*2\r\n:1\r\n") == []
    assert parser.feed(b"$3\r\nab") == []
    assert parser.feed(b"c\r\n:9") == [[1, b"abc"]]
    assert parser.feed(b"\r\n") == [9]


def test_a_large_bulk_full_of_crlf_parses_in_linear_time() -> None:
    # A cached answer of 1 MiB made of short lines: gluing line by line took seconds.
    body = (b"a line of text\r\n" * 70_000)[: 1 << 20]
    stream = b"$%d\r\n%s\r\n+OK\r\n" % (len(body), body)
    parser = RespParser()
    replies: list[Reply] = []
    started = time.perf_counter()
    for offset in range(0, len(stream), 65536):
        replies += parser.feed(stream[offset : offset + 65536])
    assert replies == [body, "OK"]
    assert time.perf_counter() - started < 0.5


def test_error_replies_are_values_with_a_code() -> None:
    (error,) = RespParser().feed(b"-WRONGTYPE Operation against a key\r\n")
    assert isinstance(error, RespError)
    assert error.message == "WRONGTYPE Operation against a key"


@pytest.mark.parametrize(
    "garbage",
    [
        b"?what\r\n",  # unknown type byte
        b":12x\r\n",  # not an integer
        b"$abc\r\n",  # not a length
        b"$-2\r\n",  # negative length other than nil
        b"$2\r\nabcd\r\n",  # payload longer than announced
        b"*x\r\n",
        b"\r\n",  # empty line
        b"+" + b"a" * 70_000,  # a header that never ends
    ],
)
def test_malformed_input_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        RespParser().feed(garbage)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_command("SELECT", 3) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    assert encode_command("SET", "clé", b"a\r\nb") == (
        b"*3\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$4\r\na\r\nb\r\n"
    )


def test_an_encoded_command_parses_back_as_an_array() -> None:
    # A command is the same RESP array a server could send; the parser reads it back unchanged.
    command = encode_command("EVALSHA", "f" * 40, 2, "gw:rl:a b", "", "ü")
    assert RespParser().feed(command) == [
        [b"EVALSHA", b"f" * 40, b"2", b"gw:rl:a b", b"", "ü".encode()]
    ]


@pytest.mark.parametrize(
    ("url", "label", "setup"),
    [
        ("redis://localhost", "localhost:6379", ()),
        ("redis://10.0.0.5:6380/2", "10.0.0.5:6380", (encode_command("SELECT", 2),)),
        ("redis://:s%40cret@h:1", "h:1", (encode_command("AUTH", "s@cret"),)),
        ("redis://u:p@h:1/0", "h:1", (encode_command("AUTH", "u", "p"),)),
        ("unix:///run/r.sock?db=1", "/run/r.sock", (encode_command("SELECT", 1),)),
    ],
)
def test_urls(url: str, label: str, setup: tuple[bytes, ...]) -> None:
    target = parse_url(url)
    assert (target.label, target.setup) == (label, setup)


def test_an_unknown_url_scheme_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_url("http://localhost:6379")
