"""CORS origin lists: ``*.domain`` patterns, exact origins and their canonical configuration.

Pure logic, no sockets: ``AllowedOrigins`` as the Cors policy consults it per request, and
``cors_origin`` as the loader applies it to every ``cors_origins`` entry.
"""

from __future__ import annotations

import pytest

from api_gateway.config.cors import cors_origin
from api_gateway.config.settings import ConfigError
from api_gateway.origins import MEMO_MAX_ORIGIN, MEMO_SIZE, AllowedOrigins

PLATFORM = AllowedOrigins(["*.tickettoken.com", "https://partner.example:8443"])


@pytest.mark.parametrize(
    "origin",
    [
        b"https://tickettoken.com",
        b"https://app.tickettoken.com",
        b"https://a.b.tickettoken.com",
        b"http://app.tickettoken.com",  # a scheme-less pattern allows http, as the original did
        b"https://my-shop_1.tickettoken.com",
        b"https://partner.example:8443",
    ],
)
def test_the_domain_its_subdomains_and_exact_origins_are_listed(origin: bytes) -> None:
    assert PLATFORM.listed(origin)


@pytest.mark.parametrize(
    "origin",
    [
        b"https://evil-tickettoken.com",
        b"https://eviltickettoken.com",
        b"https://tickettoken.com.evil.org",
        b"https://app.tickettoken.com.evil.org",
        b"https://tickettoken.co",
        b"https://ickettoken.com",
        b"https://APP.tickettoken.com",  # browsers send lower case: not a browser's origin
        b"https://TICKETTOKEN.COM",
        b"https://app.tickettoken.com.",  # a trailing dot is another origin
        b"https://tickettoken.com.",
        b"https://.tickettoken.com",  # an empty label
        b"https://a..tickettoken.com",
        b"https://app.tickettoken.com:443",  # a port: patterns name none
        b"https://app.tickettoken.com:8443",
        b"https://user@app.tickettoken.com",
        b"https://evil.org/.tickettoken.com",
        b"ftp://app.tickettoken.com",
        b"wss://app.tickettoken.com",
        b"app.tickettoken.com",
        b"://app.tickettoken.com",
        b"null",
        b"",
        b"https://partner.example",  # the exact entry names its port
        b"http://partner.example:8443",  # and its scheme
    ],
)
def test_look_alikes_and_what_no_browser_sends_are_not_listed(origin: bytes) -> None:
    assert not PLATFORM.listed(origin)


def test_a_pattern_with_a_scheme_allows_only_that_scheme() -> None:
    secure = AllowedOrigins(["https://*.tickettoken.com"])
    assert secure.listed(b"https://app.tickettoken.com")
    assert secure.listed(b"https://tickettoken.com")
    assert not secure.listed(b"http://app.tickettoken.com")


def test_a_narrower_pattern_does_not_hide_a_wider_one() -> None:
    origins = AllowedOrigins(["https://*.tickettoken.com", "http://*.staging.tickettoken.com"])
    assert origins.listed(b"https://a.staging.tickettoken.com")  # by the wider, https pattern
    assert origins.listed(b"http://a.staging.tickettoken.com")
    assert not origins.listed(b"http://app.tickettoken.com")


def test_several_pattern_domains_are_each_matched_by_label() -> None:
    origins = AllowedOrigins(["*.tickettoken.com", "*.venue.example", "*.staging.tickettoken.com"])
    assert origins.listed(b"https://test.staging.tickettoken.com")
    assert origins.listed(b"https://shop.venue.example")
    assert not origins.listed(b"https://prod.example.com")
    assert not origins.listed(b"https://venue.example.com")


def test_any_origin_is_not_a_listing_and_does_not_vary() -> None:
    anyone = AllowedOrigins(["*"])
    assert anyone.any_origin and not anyone.varies
    assert not anyone.listed(b"https://app.tickettoken.com")
    assert AllowedOrigins(["*", "*.tickettoken.com"]).varies
    assert AllowedOrigins(["https://a.example"]).varies


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("*", "*"),
        ("*.TicketToken.com", "*.tickettoken.com"),
        ("*.tickettoken.com.", "*.tickettoken.com"),
        ("HTTPS://*.tickettoken.com", "https://*.tickettoken.com"),
        ("http://*.staging.tickettoken.com/", "http://*.staging.tickettoken.com"),
        ("https://App.TicketToken.com/", "https://app.tickettoken.com"),
        ("https://tickettoken.com:8443", "https://tickettoken.com:8443"),
        ("http://localhost:5173", "http://localhost:5173"),
    ],
)
def test_entries_are_kept_in_the_form_browsers_send(entry: str, canonical: str) -> None:
    assert cors_origin(entry, "cors_origins") == canonical


@pytest.mark.parametrize(
    "entry",
    [
        "null",
        "*.com",  # every site of a top-level domain
        "*.localhost",
        "*.127.0.0.1",
        "*.tickettoken.com:443",
        "ftp://*.tickettoken.com",
        "https://app.*.tickettoken.com",
        "https://*.*.tickettoken.com",
        "*tickettoken.com",
        "*.tick etto.com",
        "app.tickettoken.com",  # no scheme: not an origin
        "https://tickettoken.com/path",
        "https://tickettoken.com?x=1",
    ],
)
def test_entries_no_browser_matches_or_that_allow_too_much_are_refused(entry: str) -> None:
    with pytest.raises(ConfigError) as error:
        cors_origin(entry, "cors_origins")
    assert error.value.key == "cors_origins"


def test_pattern_verdicts_are_remembered_within_bounds() -> None:
    origins = AllowedOrigins(["*.tickettoken.com"])
    for _ in range(2):
        assert origins.listed(b"https://app.tickettoken.com")
        assert not origins.listed(b"https://eviltickettoken.com")
    assert origins.memo.young == {
        b"https://app.tickettoken.com": True,
        b"https://eviltickettoken.com": False,
    }

    long = b"https://" + b"a" * MEMO_MAX_ORIGIN + b".tickettoken.com"
    assert origins.listed(long) and long not in origins.memo  # checked, not remembered
    for number in range(3 * MEMO_SIZE):
        origins.listed(b"https://x%d.example.org" % number)
        assert len(origins.memo) <= MEMO_SIZE
    assert origins.listed(b"https://app.tickettoken.com")
