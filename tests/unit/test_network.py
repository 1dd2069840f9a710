"""Client addresses and forwarding headers, pure: one canonical address per client, the
right-most element of a repeated list, and rate-limit keys by IPv6 prefix."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.network import (
    ADDRESS_CACHE_SIZE,
    AddressKeys,
    TrustedProxies,
    canonical_ip,
    ipv4_number,
    rightmost,
)
from api_gateway.types import Headers, Request

PROXIES = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))


def request(headers: Headers, peer: str = "10.0.0.1") -> Request:
    return Request("GET", b"/", [(b"host", b"gw.example"), *headers], b"", peer)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ('fe80::1%"}{"x":"y', "fe80::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:c633:6407", "198.51.100.7"),
        ("198.51.100.7%eth0", "198.51.100.7"),
        ("not-an-ip", None),
        ("", None),
        ("%eth0", None),
        ("1.2.3.4:80", None),
    ],
)
def test_canonical_ip(text: str, canonical: str | None) -> None:
    assert canonical_ip(text) == canonical


@given(st.text(max_size=60))
def test_a_canonical_ip_is_always_a_plain_ip_address(text: str) -> None:
    canonical = canonical_ip(text)
    if canonical is not None:
        assert str(ipaddress.ip_address(canonical)) == canonical
        assert "%" not in canonical


def test_a_zone_id_in_forwarded_for_never_reaches_the_client_address() -> None:
    req = request([(b"x-forwarded-for", b'fe80::1%eth0"}{"x":"y')])
    assert PROXIES.client_ip(req) == "fe80::1"


def test_an_ipv4_mapped_peer_is_trusted_as_its_ipv4_address() -> None:
    req = request([(b"x-forwarded-for", b"198.51.100.7")], peer="::ffff:10.0.0.1")
    assert PROXIES.client_ip(req) == "198.51.100.7"


@pytest.mark.parametrize(
    ("lines", "decided"),
    [
        ([b"evil.example", b"venue.com"], b"venue.com"),
        ([b"evil.example, venue.com"], b"venue.com"),
        ([b"venue.com", b""], b"venue.com"),
        ([b"venue.com, ,\t"], b"venue.com"),
        ([b" , "], None),
        ([], None),
    ],
)
def test_the_rightmost_element_over_all_lines_decides(
    lines: list[bytes], decided: bytes | None
) -> None:
    req = request([(b"x-forwarded-host", line) for line in lines])
    assert rightmost(req, b"x-forwarded-host") == decided


def test_the_client_host_is_the_proxys_last_element_or_host() -> None:
    appended = [(b"x-forwarded-host", b"evil.example"), (b"x-forwarded-host", b"venue.com")]
    assert PROXIES.client_host(request(appended)) == b"venue.com"
    assert PROXIES.client_host(request(appended, peer="203.0.113.9")) == b"gw.example"
    assert PROXIES.client_host(request([])) == b"gw.example"
    assert TrustedProxies(()).client_host(request(appended)) == b"gw.example"


@pytest.mark.parametrize(
    ("prefix", "address", "key"),
    [
        (64, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        (56, "2001:db8:1:2ff::1", "2001:db8:1:200::/56"),
        (128, "2001:db8::1", "2001:db8::1"),
        (64, "198.51.100.7", "198.51.100.7"),
        (64, "::ffff:198.51.100.7", "198.51.100.7"),
        (64, "fe80::1%eth0", "fe80::/64"),
        (64, "garbage", "garbage"),
    ],
)
def test_address_keys(prefix: int, address: str, key: str) -> None:
    keys = AddressKeys(prefix)
    assert keys(address) == key
    assert keys(address) is keys(address)  # memoized: one object per address


def test_address_keys_stay_bounded() -> None:
    keys = AddressKeys()
    for n in range(10_000):
        keys(f"2001:db8::{n:x}")
    assert len(keys.keys) <= ADDRESS_CACHE_SIZE


def test_long_text_is_worked_out_but_never_remembered() -> None:
    from api_gateway.network import _CANONICAL

    proxies = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"),))
    before = len(_CANONICAL)
    long_zone = "fe80::1%" + "z" * 16_000
    for n in range(50):
        assert canonical_ip(long_zone + str(n)) == "fe80::1"
        assert not proxies.contains("9" * 16_000 + str(n))
    assert len(_CANONICAL) == before
    assert len(proxies.memo) == 0
    keys = AddressKeys()
    assert keys(long_zone) == "fe80::/64"
    assert len(keys.keys) == 0


def test_addresses_in_use_keep_their_keys_through_a_flood() -> None:
    keys = AddressKeys()
    regular = keys("203.0.113.7")
    for n in range(3 * ADDRESS_CACHE_SIZE):
        keys(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        if n % 1000 == 0:
            assert keys("203.0.113.7") is regular  # remembered, not worked out again
    assert keys("203.0.113.7") is regular


def test_a_text_that_is_no_address_is_remembered_as_such() -> None:
    assert canonical_ip("not-an-ip") is None
    assert canonical_ip("not-an-ip") is None


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_its_own_canonical_form(ip: ipaddress.IPv4Address) -> None:
    assert canonical_ip(str(ip)) == str(ip)
    assert canonical_ip("::ffff:" + str(ip)) == str(ip)


@pytest.mark.parametrize("text", ["01.2.3.4", "1.2.3", "256.1.1.1", " 1.2.3.4", "1.2.3.04"])
def test_what_is_no_ipv4_address_has_no_canonical_form(text: str) -> None:
    assert canonical_ip(text) is None


def test_trusted_ipv4_networks_are_matched_by_integer() -> None:
    proxies = TrustedProxies(
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    )
    assert proxies.contains("10.1.2.3") and proxies.contains("::ffff:10.1.2.3")
    assert not proxies.contains("11.0.0.1") and not proxies.contains("9.255.255.255")
    assert proxies.contains("2001:db8::7") and not proxies.contains("2001:db9::7")


@given(st.text("0123456789.", max_size=17) | st.ip_addresses(v=4).map(str))
def test_ipv4_number_accepts_exactly_what_ipaddress_writes(text: str) -> None:
    try:
        ip: ipaddress.IPv4Address | None = ipaddress.IPv4Address(text)
    except ValueError:
        ip = None
    expected = int(ip) if ip is not None and str(ip) == text else -1
    assert ipv4_number(text) == expected


def reference_client_ip(proxies: TrustedProxies, chain: list[str], peer: str) -> str:
    """The rule, with ipaddress alone: the right-most hop that is not a trusted proxy."""

    def trusted(text: str) -> bool:
        canonical = canonical_ip(text)
        if canonical is None:
            return False
        ip = ipaddress.ip_address(canonical)
        return any(ip in network for network in proxies.networks)

    if not trusted(peer):
        return peer
    for hop in reversed(chain):
        hop = hop.strip(" \t")
        if not trusted(hop):
            return canonical_ip(hop) or canonical_ip(peer) or peer
    return canonical_ip(peer) or peer


HOPS = st.sampled_from(
    ["10.0.0.5", "10.255.1.1", "198.51.100.7", "010.0.0.5", "10.0.0.256", "::ffff:10.0.0.9",
     "::ffff:198.51.100.8", "fd00::1", "2001:db8::1", "fe80::1%eth0", "junk", "", " 10.1.1.1"]
) | st.ip_addresses(v=4).map(str)  # fmt: skip


@given(st.lists(HOPS, max_size=5), st.sampled_from(["10.0.0.1", "::ffff:10.0.0.1", "192.0.2.1"]))
def test_the_client_address_follows_the_rule_whatever_the_hops(chain: list[str], peer: str) -> None:
    """IPv4 hops are decided by integers, the others through the memos: the same answer as the
    rule worked out with ``ipaddress``, for every mix of trusted, untrusted and invalid hops."""
    headers = [(b"x-forwarded-for", ", ".join(chain).encode())] if chain else []
    assert PROXIES.client_ip(request(headers, peer)) == reference_client_ip(PROXIES, chain, peer)
