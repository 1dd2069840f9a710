"""The request as its upstream received it, for cache keys and ``Vary``: pure, no sockets.

Requests here look as they do when the cache sees them: HeaderTrust has removed the client's
``Host``, ``X-Forwarded-*``, ``X-Venue-*`` and identity headers and rendered the gateway's own
into ``upstream_block``; domain routing put the venue into ``upstream_headers``.
"""

from __future__ import annotations

from api_gateway.cache import rules, view
from api_gateway.http.wire import header_lines
from api_gateway.types import Claims, Headers, Request


def seen(
    host: bytes | None = b"tickets.venue-a.com",
    venue: tuple[bytes, bytes] | None = None,
    client: Headers | None = None,
    proto: bytes = b"http",
    port: bytes = b"8080",
    user: str | None = None,
    body: bytes = b"",
    content_length: int | None = None,
) -> Request:
    request = Request("GET", b"/api/v1/search/q", client or [], body, "10.0.0.1")
    request.content_length = content_length
    request.path = "/api/v1/search/q"
    request.request_id = "req-1"
    gateway: Headers = [
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-proto", proto),
        (b"x-forwarded-port", port),
    ]
    if host is not None:
        gateway.append((b"x-forwarded-host", host))
    gateway += [(b"x-request-id", b"req-1"), (b"x-gateway-internal", b"true")]
    request.upstream_block = header_lines(gateway)
    if user is not None:
        request.claims = Claims(user, "tenant-a", "customer", "", 0.0)
        request.upstream_block += request.claims.identity
    if venue is not None:
        request.upstream_headers = [(b"x-venue-id", venue[0]), (b"x-venue-tenant-id", venue[1])]
    return request


def key(request: Request) -> str:
    return rules.entry_key(request, "/api/v1/search/q", "g", False)


def test_the_key_holds_the_canonical_host() -> None:
    same = [b"tickets.venue-a.com", b"TICKETS.Venue-A.com.", b"tickets.venue-a.com:80"]
    assert len({key(seen(host)) for host in same}) == 1
    assert key(seen(b"tickets.venue-a.com")) != key(seen(b"tickets.venue-b.com"))
    assert key(seen(b"tickets.venue-a.com")) != key(seen(b"tickets.venue-a.com:8443"))
    assert key(seen(None)) != key(seen(b"tickets.venue-a.com"))


def test_a_host_that_does_not_normalize_keeps_its_own_key() -> None:
    odd = key(seen(b"a.com, b.com"))
    assert odd not in {key(seen(b"a.com")), key(seen(b"b.com"))}
    assert odd == key(seen(b"a.com, b.com"))


def test_the_key_holds_the_venue_scheme_and_port() -> None:
    base = key(seen(venue=(b"venue-a", b"tenant-a")))
    assert base != key(seen(venue=(b"venue-b", b"tenant-b")))
    assert base != key(seen(venue=None))
    assert key(seen(proto=b"http")) != key(seen(proto=b"https"))
    assert key(seen(port=b"443")) != key(seen(port=b"8443"))


def test_the_clients_own_copies_of_gateway_headers_are_not_read() -> None:
    # Present only if something upstream of the cache failed to remove them: still ignored.
    spoofed = seen(client=[(b"x-venue-id", b"venue-b"), (b"x-forwarded-host", b"b.com")])
    assert key(spoofed) == key(seen())
    assert view.origin(spoofed) == view.origin(seen())


def test_vary_reads_what_the_upstream_received() -> None:
    names = (b"accept-language", b"host", b"x-forwarded-host", b"x-user-id", b"x-venue-id")
    request = seen(
        host=b"Tickets.Venue-A.com",
        venue=(b"venue-a", b"tenant-a"),
        client=[(b"accept-language", b"fr"), (b"accept-language", b"en")],
        user="alice",
    )
    assert view.vary_values(request, names) == (
        b"fr, en",
        b"tickets.venue-a.com",
        b"Tickets.Venue-A.com",
        b"alice",
        b"venue-a",
    )
    assert view.vary_values(seen(), (b"x-user-id", b"x-venue-id")) == (None, None)
    assert view.vary_values(seen(), ()) == ()


def test_vary_on_a_header_new_for_every_request_is_never_stored() -> None:
    minute = (b"cache-control", b"max-age=60")
    for name in (b"X-Request-Id", b"x-request-deadline-ms"):
        assert rules.vary_names([(b"vary", b"accept, " + name)]) is None
        assert rules.freshness(200, [minute, (b"vary", name)], 0, False, 60_000) is None


def test_a_request_with_a_body_bypasses_the_cache() -> None:
    assert not rules.bypasses(seen())
    assert not rules.bypasses(seen(content_length=0))
    assert rules.bypasses(seen(body=b"{}", content_length=2))
    assert rules.bypasses(seen(body=b"{}"))  # chunked, read whole already
    assert rules.bypasses(seen(content_length=5))


class Stream:
    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration

    def abort(self) -> None:
        pass


def test_a_streamed_body_bypasses_the_cache() -> None:
    request = seen()
    request.body = Stream()
    assert rules.bypasses(request)


def test_a_value_too_long_to_be_a_host_keeps_its_own_key_and_is_never_remembered() -> None:
    view._HOSTS.clear()
    long_hosts = [b"h%d_" % n + b"!" * 16_000 for n in range(50)]

    assert [view.canonical_host(raw) for raw in long_hosts] == [b"?" + raw for raw in long_hosts]
    assert len(view._HOSTS) == 0
    # Every valid host name is still remembered, however long (at most 260 bytes).
    longest = b".".join([b"a" * 63] * 3) + b".example-venue.com"
    assert view.canonical_host(longest) == longest
    assert longest in view._HOSTS


def first_line_value(block: bytes, name: bytes) -> bytes | None:
    """The value of the first line of ``block`` that begins with ``name: ``, line by line."""
    for line in block.split(b"\r\n"):
        if line.startswith(name + b": "):
            return line[len(name) + 2 :]
    return None


def test_the_forwarded_origin_is_each_names_first_line_wherever_it_is() -> None:
    names = (b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port")
    lines: Headers = [
        (b"x-request-id", b"r"),
        (b"x-forwarded-port", b"8443"),
        (b"x-forwarded-hostname", b"not-the-host"),
        (b"x-forwarded-host", b"a.example"),
        (b"x-forwarded-port", b"80"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"b.example"),
    ]
    for cut in range(len(lines) + 1):
        for order in (lines[:cut], lines[cut:] + lines[:cut], list(reversed(lines[:cut]))):
            block = header_lines(order)
            expected = tuple(first_line_value(block, name) for name in names)
            assert view.forwarded_origin(block) == expected, order
    assert view.forwarded_origin(b"") == (None, None, None)
