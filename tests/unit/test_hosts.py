"""Host normalization and platform hosts: a table of accepted and refused values, and properties
that hold for any host name (one canonical form, stable under re-normalization)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import InvalidHost
from api_gateway.hosts import Authority, PlatformHosts, check_target_authority, normalize_host


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"venue.com", "venue.com"),
        (b"Tickets.Venue.COM", "tickets.venue.com"),
        (b"venue.com.", "venue.com"),
        (b"venue.com:80", "venue.com"),
        (b"venue.com:443", "venue.com"),
        (b"VENUE.com.:443", "venue.com"),
        (b"venue.com:", "venue.com"),
        (b"venue.com:8443", "venue.com:8443"),
        (b"venue.com:08443", "venue.com:8443"),
        (b"xn--bcher-kva.example", "xn--bcher-kva.example"),
        (b"a-b.c-d.io", "a-b.c-d.io"),
        (b"localhost:3000", "localhost:3000"),
        (b"127.0.0.1:3000", "127.0.0.1:3000"),
        (b"[::1]", "[::1]"),
        (b"[0:0::1]:80", "[::1]"),
        (b"[2001:DB8::1]:8080", "[2001:db8::1]:8080"),
    ],
)
def test_accepted_hosts_and_their_canonical_key(raw: bytes, key: str) -> None:
    assert normalize_host(raw).key == key


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b" ",
        b"venue .com",
        b"venue.com ",
        b"user@venue.com",
        b"user:pw@venue.com",
        b"venue.com:0",
        b"venue.com:65536",
        b"venue.com:99999999",
        b"venue.com:8o",
        b"venue.com:-1",
        b"venue.com:80:80",
        b"venue..com",
        b".venue.com",
        b"venue.com..",
        b".",
        b":80",
        b"-venue.com",
        b"venue-.com",
        b"ven_ue.com",
        b"venue.com/path",
        b"venue.com?x",
        b"venue.com#x",
        b"venue.com\\x",
        b"v\xc3\xa9nue.com",
        b"venue.com\x00",
        b"1.2.3",
        b"256.1.1.1",
        b"01.2.3.4",
        b"0x7f.1",
        b"[::1",
        b"[::1]x",
        b"[fe80::1%eth0]",
        b"[venue.com]",
        b"a" * 64 + b".com",
        b"a." * 130 + b"com",
    ],
)
def test_malformed_hosts_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidHost):
        normalize_host(raw)


def test_ip_literals_are_marked() -> None:
    assert normalize_host(b"10.0.0.1").is_ip
    assert normalize_host(b"[::1]:9000").is_ip
    assert not normalize_host(b"venue.com").is_ip


label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
names = (
    st.lists(label, min_size=1, max_size=5)
    .map(".".join)
    .filter(lambda name: not name.rpartition(".")[2].isdigit())
)
ports = st.one_of(st.none(), st.integers(1, 65535))


def render(name: str, port: int | None) -> str:
    return name if port is None else f"{name}:{port}"


@given(names, ports, st.booleans(), st.data())
def test_case_trailing_dot_and_default_port_never_change_the_key(
    name: str, port: int | None, trailing_dot: bool, data: st.DataObject
) -> None:
    written = "".join(char.upper() if data.draw(st.booleans()) else char for char in name) + (
        "." if trailing_dot else ""
    )
    expected = name if port in (None, 80, 443) else f"{name}:{port}"

    assert normalize_host(render(written, port).encode()).key == expected


@given(names, ports)
def test_a_canonical_key_normalizes_to_itself(name: str, port: int | None) -> None:
    key = normalize_host(render(name, port).encode()).key

    assert normalize_host(key.encode()).key == key


@given(st.binary(max_size=40))
def test_any_bytes_are_either_refused_or_a_canonical_host(raw: bytes) -> None:
    try:
        host = normalize_host(raw)
    except InvalidHost:
        return
    assert host.key == host.key.lower() and not host.name.endswith(".")
    assert normalize_host(host.key.encode()) == host


PLATFORM = PlatformHosts(["tickettoken.io", "*.tickettoken.io", "gateway.acme.com"])


@pytest.mark.parametrize(
    "raw",
    [
        b"tickettoken.io",
        b"api.tickettoken.io",
        b"a.b.tickettoken.io:8443",
        b"gateway.acme.com",
        b"localhost",
        b"api-gateway",  # a cluster service name: one label
        b"gateway.test",
        b"shop.example.com",
        b"example.org",
        b"svc.cluster.local",
        b"10.0.0.1",
        b"[::1]",
    ],
)
def test_platform_hosts_are_never_a_venues(raw: bytes) -> None:
    assert normalize_host(raw) in PLATFORM


@pytest.mark.parametrize(
    "raw", [b"tickets.venue.com", b"eviltickettoken.io", b"acme.com", b"tickettoken.io.evil.com"]
)
def test_other_hosts_may_be_a_venues(raw: bytes) -> None:
    assert normalize_host(raw) not in PLATFORM


def test_a_wildcard_does_not_cover_its_apex() -> None:
    assert Authority("venue.com") not in PlatformHosts(["*.venue.com"])
    assert Authority("www.venue.com") in PlatformHosts(["*.venue.com"])


@pytest.mark.parametrize(
    ("authority", "host"),
    [(b"a.test", b"A.Test."), (b"a.test:80", b"a.test"), (b"[::1]:8080", b"[0:0::1]:8080")],
)
def test_a_target_naming_the_host_header_is_accepted(authority: bytes, host: bytes) -> None:
    check_target_authority(authority, host)


@pytest.mark.parametrize(
    ("authority", "host"),
    [
        (b"b.test", b"a.test"),
        (b"u@a.test", b"a.test"),
        (b"a.test:8080", b"a.test"),
        (b"a.test", None),
    ],
)
def test_a_target_naming_another_host_is_refused(authority: bytes, host: bytes | None) -> None:
    with pytest.raises(InvalidHost):
        check_target_authority(authority, host)
