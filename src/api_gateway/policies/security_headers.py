"""Security response headers on every response, as the platform's previous gateway set them
with Helmet.

An upstream that sets one of these itself keeps its own value.
"""

from __future__ import annotations

from operator import itemgetter

from api_gateway.types import Headers, Response

HELMET_DEFAULTS: Headers = [
    (
        b"content-security-policy",
        b"default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';"
        b"frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';"
        b"script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"origin-agent-cluster", b"?1"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=15552000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-dns-prefetch-control", b"off"),
    (b"x-download-options", b"noopen"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-permitted-cross-domain-policies", b"none"),
    (b"x-xss-protection", b"0"),
]
NAMES = frozenset(name for name, _ in HELMET_DEFAULTS)
RENDERED = b"".join(b"%s: %s\r\n" % header for header in HELMET_DEFAULTS)


def add_security_headers(response: Response) -> None:
    headers = response.headers
    if NAMES.isdisjoint(map(itemgetter(0), headers)):
        response.rendered += RENDERED
        return
    present = {name for name, _ in headers}
    headers.extend(h for h in HELMET_DEFAULTS if h[0] not in present)
