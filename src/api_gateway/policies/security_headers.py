"""Security response headers on every response, as the platform's previous gateway set them
with Helmet.

An upstream that sets one of these itself keeps its own value.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Final

from api_gateway.http.wire import header_lines
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


class SecurityHeaders:
    """Helmet's defaults with the configured replacements, additions and removals applied."""

    def __init__(self, overrides: Sequence[tuple[str, str | None]] = ()) -> None:
        table = dict(HELMET_DEFAULTS)
        for name, value in overrides:
            key = name.encode("ascii")
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value.encode("ascii")
        self.headers: Headers = list(table.items())
        self.names = frozenset(table)
        self.rendered = header_lines(self.headers)

    def add(self, response: Response) -> None:
        headers = response.headers
        if self.names.isdisjoint(map(itemgetter(0), headers)):
            response.rendered += self.rendered
            return
        present = {name for name, _ in headers}
        headers.extend(h for h in self.headers if h[0] not in present)


DEFAULT: Final = SecurityHeaders()
