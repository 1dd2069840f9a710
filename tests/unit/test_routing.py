"""Unit tests for request-target splitting, path normalization, public paths and the route table."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api_gateway.errors import InvalidPath
from api_gateway.routing import (
    PublicPaths,
    RouteTable,
    is_plain,
    normalize,
    split_target,
    target_authority,
)

UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
FORBIDDEN_ENCODED = [ord(c) for c in "/\\#?"] + list(range(0x20)) + [0x7F]


def pct(byte: int, upper: bool = True) -> str:
    text = f"%{byte:02X}"
    return text if upper else text.lower()


# --- split_target -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", (b"/", b"")),
        (b"/api/v1/tickets", (b"/api/v1/tickets", b"")),
        (b"/api/v1/tickets?page=2&sort=asc", (b"/api/v1/tickets", b"page=2&sort=asc")),
        (b"/search?q=a?b", (b"/search", b"q=a?b")),
        (b"/p?", (b"/p", b"")),
    ],
)
def test_split_origin_form(target: bytes, expected: tuple[bytes, bytes]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"http://gateway.example/api/v1/events?x=1", (b"/api/v1/events", b"x=1")),
        (b"https://gateway.example:8443/p", (b"/p", b"")),
        (b"HTTP://Gateway.Example/p?q", (b"/p", b"q")),
        (b"http://gateway.example", (b"/", b"")),
    ],
)
def test_split_absolute_form_keeps_only_path_and_query(
    target: bytes, expected: tuple[bytes, bytes]
) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", [b"/p#frag", b"/p?q=1#frag", b"http://h/p#f"])
def test_split_rejects_fragment(target: bytes) -> None:
    with pytest.raises(InvalidPath):
        split_target(target)


@pytest.mark.parametrize("target", [b"*", b"api/v1/tickets", b"", b"ftp://h/p", b"example.com:443"])
def test_split_rejects_targets_that_are_not_absolute_paths(target: bytes) -> None:
    with pytest.raises(InvalidPath):
        split_target(target)


def test_split_absolute_form_without_path_keeps_query() -> None:
    assert split_target(b"http://gateway.example?next=/admin") == (b"/", b"next=/admin")


def test_split_absolute_form_without_path_rejects_fragment() -> None:
    with pytest.raises(InvalidPath):
        split_target(b"http://gateway.example#frag")


# --- normalize: examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/", "/"),
        (b"/api/v1/tickets", "/api/v1/tickets"),
        (b"/api/v1/tickets/", "/api/v1/tickets/"),
        (b"/a/./b", "/a/b"),
        (b"/a/../b", "/b"),
        (b"/a/b/../../c", "/c"),
        (b"/a/b/..", "/a/"),
        (b"/a/b/.", "/a/b/"),
        (b"/a//b///c", "/a/b/c"),
        (b"//", "/"),
        (b"/..", "/"),
        (b"/../../etc/passwd", "/etc/passwd"),
        (b"/api/../../../x", "/x"),
        (b"/a/...", "/a/..."),
        (b"/a/.hidden/b", "/a/.hidden/b"),
        (b"/a/b../c", "/a/b../c"),
    ],
)
def test_normalize_resolves_dots_and_slashes(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/a/%2e/b", "/a/b"),
        (b"/a/%2E/b", "/a/b"),
        (b"/a/b/%2e%2e/c", "/a/c"),
        (b"/a/b/%2E%2e/c", "/a/c"),
        (b"/a/b/.%2e/c", "/a/c"),
        (b"/a/b/%2e./c", "/a/c"),
        (b"/api/v1/public/%2e%2e/admin", "/api/v1/admin"),
        (b"/%2e%2e/%2e%2e/x", "/x"),
        (b"/a/%2e%2e", "/"),
        (b"/a/b/%2e", "/a/b/"),
    ],
)
def test_normalize_resolves_encoded_dots(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"/a%2fb",
        b"/a%2Fb",
        b"/a%5cb",
        b"/a%5Cb",
        b"/a%23b",
        b"/a%3fb",
        b"/a%3Fb",
        b"/a%00b",
        b"/a%0d%0ab",
        b"/a%09b",
        b"/a%1fb",
        b"/a%7fb",
        b"/..%2f..%2fetc",
    ],
)
def test_normalize_rejects_encoded_separators_and_controls(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize(
    "raw", [b"/public/..;/private", b"/a/..;x=1/b", b"/a/.;/b", b"/a/%2e%2e;/b", b"/a/.%2E;v/b"]
)
def test_normalize_rejects_dot_segments_with_parameters(raw: bytes) -> None:
    # Servers that strip path parameters read `..;` as `..`: a public prefix would be left.
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(b"/a/..x;/b", "/a/..x;/b"), (b"/a;/../b", "/b"), (b"/a/b;..", "/a/b;..")]
)
def test_normalize_keeps_parameters_on_names(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", [b"/a%zz", b"/a%4", b"/a%", b"/%g1/b", b"/a%4/b", b"/a%%41"])
def test_normalize_rejects_invalid_percent_encoding(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize("raw", [b"/a\\b", b"\\a", b"/a/..\\..\\b", b"/\\\\host/share"])
def test_normalize_rejects_raw_backslash(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize(
    "raw", [b"//a\x00b", b"/a/../b\x01", b"/%41\r\n", b"/./a\tb", b"//a b", b"/./a\x7fb"]
)
def test_normalize_rejects_raw_control_characters_in_suspect_paths(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize("raw", [b"/a\x00b", b"/a\r\nX-Injected: 1", b"/a\tb", b"/a b", b"/a\x7f"])
def test_normalize_rejects_raw_control_characters_in_plain_paths(raw: bytes) -> None:
    with pytest.raises(InvalidPath):
        normalize(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/%41%42%43", "/ABC"),
        (b"/%61bc", "/abc"),
        (b"/%7e%7E", "/~~"),
        (b"/a%2db%5fc", "/a-b_c"),
        (b"/%30%39", "/09"),
    ],
)
def test_normalize_decodes_unreserved_escapes(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/a%3ab", "/a%3Ab"),
        (b"/a%20b", "/a%20b"),
        (b"/a%25", "/a%25"),
        (b"/%c3%a9", "/%C3%A9"),
        (b"/a%2bb", "/a%2Bb"),
    ],
)
def test_normalize_uppercases_other_escapes(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/caf\u00e9".encode(), "/caf%C3%A9"),
        ("/\u65e5\u672c".encode(), "/%E6%97%A5%E6%9C%AC"),
        (b"/\xff", "/%FF"),
        ("/a/./\u00e9/".encode(), "/a/%C3%A9/"),
    ],
)
def test_normalize_percent_encodes_non_ascii_bytes(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_does_not_decode_an_encoded_percent_twice() -> None:
    # '%252e' is a literal "%2e" segment, never a dot segment.
    assert normalize(b"/a/%252e%252e/b") == "/a/%252e%252e/b"


# --- normalize: properties ----------------------------------------------------------------------

raw_paths = st.binary(max_size=40).map(lambda b: b"/" + b)
# Paths made of the characters that matter to normalization, so accepted inputs are common.
interesting_paths = st.lists(
    st.sampled_from(
        [b"/", b".", b"..", b"a", b"b", b"%2e", b"%2E", b"%41", b"%3a", b"%25", b"\xc3\xa9", b"~"]
    ),
    max_size=14,
).map(lambda parts: b"/" + b"".join(parts))
accepted_candidates = st.one_of(raw_paths, interesting_paths)


def accepted(raw: bytes) -> str | None:
    try:
        return normalize(raw)
    except InvalidPath:
        return None


# The grammar of a path that needs no normalization, as a regular expression: the reference the
# byte-level check in ``is_plain`` must agree with.
PLAIN_PATH = re.compile(rb"(?:/[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]*)*/?")


@given(
    st.binary(max_size=12)
    | st.lists(st.sampled_from(b"/./%;a-~Z9\\ ?#\x7f\x80"), max_size=10).map(bytes)
)
@example(b"/a/.b")
@example(b"/a//b")
@example(b"/a/b/")
@example(b"")
def test_the_plain_path_check_agrees_with_the_grammar(raw: bytes) -> None:
    assert is_plain(raw) == bool(PLAIN_PATH.fullmatch(raw))


@given(accepted_candidates)
@example(b"/a/b/../")
@example(b"/%2e%2E/a%3a")
def test_normalize_is_idempotent(raw: bytes) -> None:
    once = accepted(raw)
    if once is not None:
        assert normalize(once.encode("ascii")) == once


@given(accepted_candidates)
def test_normalized_path_is_canonical(raw: bytes) -> None:
    out = accepted(raw)
    if out is None:
        return
    assert out.startswith("/")
    assert out.isascii()
    assert "//" not in out
    assert "\\" not in out
    segments = out.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments


def resolve(segments: list[str]) -> str:
    """Reference resolution (RFC 3986 remove_dot_segments, empty segments dropped)."""
    stack: list[str] = []
    for segment in segments:
        if segment == "..":
            if stack:
                stack.pop()
        elif segment not in ("", "."):
            stack.append(segment)
    trailing = bool(segments) and segments[-1] in ("", ".", "..")
    return "/" + "/".join(stack) + ("/" if trailing and stack else "")


safe_segment = st.text(alphabet="abcxyz019-_~.", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
dot_segment = st.sampled_from([".", ".."])
any_segment = st.one_of(safe_segment, dot_segment, st.just(""))
DOT_SPELLINGS = {".": [".", "%2e", "%2E"], "..": ["..", "%2e%2e", "%2E%2E", ".%2e", "%2E."]}


@given(st.lists(any_segment, max_size=12), st.data())
def test_traversal_matches_plain_resolution(segments: list[str], data: st.DataObject) -> None:
    spelled = [
        data.draw(st.sampled_from(DOT_SPELLINGS[s])) if s in DOT_SPELLINGS else s for s in segments
    ]
    raw = ("/" + "/".join(spelled)).encode()
    assert normalize(raw) == resolve(segments)


@given(
    st.lists(safe_segment, min_size=1, max_size=4),
    st.lists(st.one_of(safe_segment, dot_segment), max_size=10),
)
def test_traversal_never_escapes_the_prefix_it_does_not_climb_out_of(
    prefix: list[str], rest: list[str]
) -> None:
    # However the rest is written, the result keeps the prefix unless '..' climbs past it.
    depth, lowest = 0, 0
    for segment in rest:
        if segment == "..":
            depth -= 1
        elif segment != ".":
            depth += 1
        lowest = min(lowest, depth)
    out = normalize(("/" + "/".join(prefix + rest)).encode())
    kept = max(len(prefix) + lowest, 0)
    assert out.split("/")[1 : kept + 1] == prefix[:kept]
    assert out == resolve(prefix + rest)


@given(st.text(alphabet=UNRESERVED, min_size=1, max_size=10), st.booleans())
def test_encoded_unreserved_characters_are_decoded(text: str, upper: bool) -> None:
    if text in (".", ".."):
        return
    raw = "/x/" + "".join(pct(ord(c), upper) for c in text)
    assert normalize(raw.encode()) == "/x/" + text


@given(
    st.integers(0x21, 0xFF).filter(
        lambda b: chr(b) not in UNRESERVED and b not in FORBIDDEN_ENCODED
    ),
    st.booleans(),
)
def test_other_escapes_are_kept_upper_case(byte: int, upper: bool) -> None:
    assert normalize(f"/x/{pct(byte, upper)}".encode()) == f"/x/{pct(byte)}"


@given(st.sampled_from(FORBIDDEN_ENCODED), st.booleans())
def test_forbidden_escapes_are_rejected(byte: int, upper: bool) -> None:
    with pytest.raises(InvalidPath):
        normalize(f"/x/{pct(byte, upper)}/y".encode())


@given(st.integers(0x80, 0xFF))
def test_non_ascii_bytes_are_percent_encoded(byte: int) -> None:
    assert normalize(b"/x/" + bytes([byte])) == f"/x/{pct(byte)}"


# --- PublicPaths --------------------------------------------------------------------------------


def test_public_exact_entries_match_only_themselves() -> None:
    public = PublicPaths.parse(["/login", "/health"])
    assert "/login" in public
    assert "/health" in public
    assert "/login/extra" not in public
    assert "/loginx" not in public
    assert "/logi" not in public
    assert "/" not in public


def test_public_subtree_matches_root_and_descendants_only() -> None:
    public = PublicPaths.parse(["/webhooks/*"])
    assert "/webhooks" in public
    assert "/webhooks/stripe" in public
    assert "/webhooks/stripe/events/1" in public
    assert "/webhooksx" not in public
    assert "/webhooks-admin/x" not in public
    assert "/other/webhooks" not in public


def test_public_star_matches_everything() -> None:
    public = PublicPaths.parse(["/*"])
    for path in ("/", "", "/a", "/a/b/c", "/anything-at-all"):
        assert path in public


def test_public_ignores_trailing_slash_of_request() -> None:
    public = PublicPaths.parse(["/login", "/webhooks/*"])
    assert "/login/" in public
    assert "/webhooks/" in public
    assert "/webhooks/stripe/" in public


def test_public_empty_matches_nothing() -> None:
    public = PublicPaths.parse([])
    assert "/" not in public
    assert "/login" not in public


def test_public_route_root_is_public_only_when_listed() -> None:
    # Authenticate passes "" for a request to the route prefix itself.
    assert "" not in PublicPaths.parse(["/login"])
    assert "" in PublicPaths.parse(["/"])


# --- RouteTable ---------------------------------------------------------------------------------


@pytest.fixture
def table() -> RouteTable[str]:
    routes: RouteTable[str] = RouteTable()
    routes.add("/api/v1/tickets", "tickets")
    routes.add("/api/v1/ticket", "ticket")
    routes.add("/api/v1/tickets/purchase", "purchase")
    routes.add("/api/v1/events", "events")
    return routes


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/tickets", ("/api/v1/tickets", "tickets")),
        ("/api/v1/tickets/", ("/api/v1/tickets", "tickets")),
        ("/api/v1/tickets/42", ("/api/v1/tickets", "tickets")),
        ("/api/v1/ticket", ("/api/v1/ticket", "ticket")),
        ("/api/v1/ticket/42", ("/api/v1/ticket", "ticket")),
        ("/api/v1/tickets/purchase", ("/api/v1/tickets/purchase", "purchase")),
        ("/api/v1/tickets/purchase/7", ("/api/v1/tickets/purchase", "purchase")),
        ("/api/v1/tickets/purchases", ("/api/v1/tickets", "tickets")),
        ("/api/v1/events/1/tickets", ("/api/v1/events", "events")),
    ],
)
def test_route_match_longest_segment_prefix(
    table: RouteTable[str], path: str, expected: tuple[str, str]
) -> None:
    assert table.match(path) == expected


@pytest.mark.parametrize(
    "path", ["/api/v1/ticketsX", "/api/v1/tickets-admin", "/api/v1/tick", "/api/v1", "/", "/api"]
)
def test_route_match_refuses_partial_segments(table: RouteTable[str], path: str) -> None:
    assert table.match(path) is None


route_segment = st.sampled_from(["a", "b", "ab", "ticket", "tickets"])
route_prefix = st.lists(route_segment, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))


@given(
    st.lists(route_prefix, max_size=8, unique=True),
    st.lists(route_segment, max_size=5),
    st.booleans(),
)
def test_route_match_equals_brute_force_longest_prefix(
    prefixes: list[str], path_segments: list[str], trailing: bool
) -> None:
    routes: RouteTable[str] = RouteTable()
    for prefix in prefixes:
        routes.add(prefix, prefix.upper())
    path = "/" + "/".join(path_segments) + ("/" if trailing and path_segments else "")
    bare = path.rstrip("/") or "/"
    holding = [p for p in prefixes if bare == p or bare.startswith(p + "/")]
    expected = max(holding, key=len, default=None)
    assert routes.match(path) == (None if expected is None else (expected, expected.upper()))


@pytest.mark.parametrize(
    ("target", "authority"),
    [
        (b"/a/b", None),
        (b"http://h.test/a", b"h.test"),
        (b"HTTPS://h.test:8443?x=1", b"h.test:8443"),
        (b"http://u@h.test", b"u@h.test"),
    ],
)
def test_target_authority(target: bytes, authority: bytes | None) -> None:
    assert target_authority(target) == authority
