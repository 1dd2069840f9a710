"""Which browser origins may read the API's answers: exact origins and ``*.domain`` patterns.

Built once at start-up from ``cors_origins`` in canonical form (``config/cors.py``). Per request,
an exact origin costs one set lookup; a pattern costs one dictionary lookup per label of the
origin's host (``https://a.b.example.com`` asks ``a.b.example.com``, ``b.example.com``,
``example.com``), whatever the number of patterns, and the verdict is memoized (bounded), so a
browser's repeated origin costs one dictionary lookup. Whole labels are compared, never a
suffix of the text, so ``*.example.com`` never matches ``evilexample.com`` or
``example.com.evil.org``.

A pattern matches the domain itself and any subdomain, with no port (a browser sends none for
the default ports), over ``http`` or ``https`` unless the pattern names its scheme
(``https://*.example.com``). Browsers serialize an origin in lower case without a trailing dot,
so an origin that is not in that form (``https://APP.example.com``, ``https://example.com.``,
an empty label) is not one a browser sends, and is matched by nothing but an exact entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from api_gateway.memo import Memo

ANY: Final = "*"
PATTERN_PREFIX: Final = "*."
SCHEMES: Final = frozenset({b"http", b"https"})
SCHEME_END: Final = b"://"
COLON: Final = ord(":")
DOT: Final = ord(".")
# Lower-case labels as browsers serialize them (``_`` too: URL parsers accept it in a host).
BROWSER_HOST: Final = re.compile(rb"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# Verdicts remembered for pattern checks: origins are few per site, and the client picks them,
# so both their number and their length are bounded (a longer one is checked every time).
MEMO_SIZE: Final = 1024
MEMO_MAX_ORIGIN: Final = 256


class AllowedOrigins:
    """The configured origins, compiled for the per-request check."""

    __slots__ = ("any_origin", "domains", "exact", "memo")

    def __init__(self, entries: Iterable[str]) -> None:
        exact: set[bytes] = set()
        domains: dict[bytes, set[bytes]] = {}
        self.any_origin = False
        for entry in entries:
            if entry == ANY:
                self.any_origin = True
            elif PATTERN_PREFIX in entry:
                scheme, _, domain = entry.rpartition(PATTERN_PREFIX)
                schemes = {scheme.removesuffix("://").encode()} if scheme else SCHEMES
                domains.setdefault(domain.encode(), set()).update(schemes)
            else:
                exact.add(entry.rstrip("/").lower().encode())
        self.exact: frozenset[bytes] = frozenset(exact)
        # Domain -> the schemes its patterns allow.
        self.domains: dict[bytes, frozenset[bytes]] = {
            domain: frozenset(schemes) for domain, schemes in domains.items()
        }
        self.memo: Memo[bytes, bool] = Memo(MEMO_SIZE)

    @property
    def varies(self) -> bool:
        """Whether the answer depends on the origin (anything listed besides ``*``)."""
        return bool(self.exact or self.domains)

    def listed(self, origin: bytes) -> bool:
        """Whether ``origin`` is listed: exactly, or by a pattern (``*`` is not a listing)."""
        if origin in self.exact:
            return True
        if not self.domains:
            return False
        verdict = self.memo.get(origin)
        if verdict is None:
            verdict = self._matches_pattern(origin)
            if len(origin) <= MEMO_MAX_ORIGIN:
                self.memo.put(origin, verdict)
        return verdict

    def _matches_pattern(self, origin: bytes) -> bool:
        end = origin.find(SCHEME_END)
        if end <= 0:
            return False  # "null", or no scheme at all
        scheme, host = origin[:end], origin[end + 3 :]
        if COLON in host:
            return False  # a port (or an IPv6 literal): patterns name neither
        start = 0
        while True:
            schemes = self.domains.get(host[start:] if start else host)
            if schemes is not None and scheme in schemes:
                return BROWSER_HOST.fullmatch(host) is not None
            dot = host.find(DOT, start)
            if dot < 0:
                return False
            start = dot + 1
