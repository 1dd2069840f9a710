"""Fetching a JWKS document: when (``RefreshSchedule``, pure) and how (``Fetcher``: one GET
bounded in time as a whole and in bytes, no redirects, 200 only).

Not on the request path: a fresh connection per fetch (``Connection: close``), so a slow or
hostile endpoint can cost one socket for at most the timeout. Failures are ``FetchFailed`` with
a generic reason that names neither the URL nor anything the endpoint sent.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, urlsplit

import httptools

READ_SIZE: Final = 65536
# Bytes of the response head (status line and fields) accepted before the body begins.
MAX_HEAD_BYTES: Final = 65536
USER_AGENT: Final = "api-gateway-jwks"
# What a request target keeps as written (RFC 3986 pchar, '/', '?', and '%' of escapes made
# already); anything else, a space or a non-ASCII letter, is percent-encoded.
URI_SAFE: Final = "/?%:@!$&'()*+,;=-._~"
MIN_PERIOD_S: Final = 60.0
MAX_PERIOD_S: Final = 86_400.0
DEFAULT_PERIOD_S: Final = 600.0  # without max-age
JITTER: Final = 0.1  # a period is shortened by up to 10%, so workers and gateways drift apart
RETRY_S: Final = 5.0  # after a failed refresh, doubling up to the period
FIRST_RETRY_S: Final = 1.0  # while no set was ever loaded, doubling up to FIRST_RETRY_MAX_S
FIRST_RETRY_MAX_S: Final = 5.0
UNKNOWN_KID_COOLDOWN_S: Final = 30.0


class FetchFailed(Exception):
    """Why a fetch brought no document; the text is safe to log and to show on /ready."""


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    cache_control: str  # the response's Cache-Control fields, joined


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: bool
    head: bytes  # the whole request


def target(url: str) -> Target:
    try:
        parts = urlsplit(url)  # drops tabs and line breaks: nothing can end the request line
        port = parts.port
        authority = parts.netloc.rpartition("@")[2]  # credentials in a URL are never sent
        authority.encode("ascii")
    except ValueError:  # a port out of range, a non-ASCII host (UnicodeError is a ValueError)
        raise FetchFailed("the JWKS URL is not a valid http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchFailed("the JWKS URL is not an http(s) URL")
    tls = parts.scheme == "https"
    path = quote(parts.path or "/", safe=URI_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=URI_SAFE)
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n"
        f"User-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "strict")
    return Target(parts.hostname, port or (443 if tls else 80), tls, head)


def max_age(cache_control: str) -> float | None:
    """The ``max-age`` of a Cache-Control value in seconds; ``no-cache``/``no-store`` are 0;
    None when it says neither (or says it unreadably)."""
    age: float | None = None
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            if not value.isdigit():
                return None
            age = float(min(int(value[:12]), 10**9))  # a silly length must not be a big int
    return age


class RefreshSchedule:
    """When to fetch next, and whether a token's unknown ``kid`` may cause a fetch now: pure,
    in the seconds of whatever clock the caller reads."""

    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self.rng = rng
        self.next_due = 0.0
        self.period = DEFAULT_PERIOD_S
        self.failures = 0
        self.loaded = False
        self.unknown_closed_until = float("-inf")

    def succeeded(self, now: float, max_age_s: float | None) -> float:
        age = DEFAULT_PERIOD_S if max_age_s is None else max_age_s
        self.period = min(max(age, MIN_PERIOD_S), MAX_PERIOD_S)
        self.loaded, self.failures = True, 0
        self.next_due = now + self.period * (1 - JITTER * self.rng())
        return self.next_due

    def failed(self, now: float) -> float:
        self.failures += 1
        doubling: float = 2 ** min(self.failures - 1, 30)
        if self.loaded:
            delay = min(RETRY_S * doubling, self.period)
        else:
            delay = min(FIRST_RETRY_S * doubling, FIRST_RETRY_MAX_S)
        self.next_due = now + delay
        return self.next_due

    def may_refresh_unknown(self, now: float) -> bool:
        return now >= self.unknown_closed_until

    def unknown_refreshed(self, started: float, found: bool) -> None:
        """A refresh for an unknown kid ended. One that did not bring the kid closes the door
        for the cooldown: tokens naming made-up kids cost the endpoint one fetch per 30 s. One
        that did cannot be caused by a client (the issuer published the key), so it costs
        nothing: a second rotation soon after is picked up at once."""
        if not found:
            self.unknown_closed_until = started + UNKNOWN_KID_COOLDOWN_S


@dataclass
class Response:
    """What the parser saw, filled in by its callbacks."""

    max_bytes: int
    status: int = 0
    headers_done: bool = False
    complete: bool = False
    framed: bool = False  # Content-Length or chunked: the end is not the connection's close
    oversize: bool = False
    cache_control: list[str] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    received: int = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"cache-control":
            self.cache_control.append(value.decode("latin-1"))
        elif name == b"content-length":
            self.framed = True
            # Refused before any of the body is read.
            if not value.strip().isdigit() or int(value.strip()[:20]) > self.max_bytes:
                self.oversize = True
        elif name == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.max_bytes:
            self.oversize = True
        elif not self.oversize:
            self.chunks.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


class Fetcher:
    """GETs one URL; the TLS context is made once (loading the CA store is not free)."""

    def __init__(
        self, url: str, timeout_s: float, max_bytes: int, tls: ssl.SSLContext | None = None
    ) -> None:
        # A URL that cannot be fetched fails every fetch (and /ready says why), not start-up.
        self.invalid = ""
        try:
            self.target = target(url)
        except FetchFailed as exc:
            self.target, self.invalid = Target("", 0, False, b""), str(exc)
        self.timeout_s, self.max_bytes = timeout_s, max_bytes
        # The system's CAs and hostname checking (``tls``: another trust, for tests).
        self.tls = (tls or ssl.create_default_context()) if self.target.tls else None

    async def fetch(self) -> Fetched:
        if self.invalid:
            raise FetchFailed(self.invalid)
        try:
            return await asyncio.wait_for(self._fetch(), self.timeout_s)
        except TimeoutError:
            raise FetchFailed(f"no complete answer within {self.timeout_s * 1000:.0f} ms") from None
        except ssl.SSLError as exc:
            raise FetchFailed(f"TLS failed ({type(exc).__name__})") from None
        except OSError as exc:
            raise FetchFailed(f"connection failed ({type(exc).__name__})") from None

    async def _fetch(self) -> Fetched:
        t = self.target
        server_name = t.host if self.tls is not None else None
        reader, writer = await asyncio.open_connection(
            t.host, t.port, ssl=self.tls, server_hostname=server_name
        )
        try:
            writer.write(t.head)
            response = await self._read(reader)
        finally:
            writer.transport.abort()  # nothing more to say: no lingering close handshake
        if response.status != 200:
            raise FetchFailed(f"HTTP status {response.status} (200 required; no redirects)")
        return Fetched(b"".join(response.chunks), ", ".join(response.cache_control))

    async def _read(self, reader: asyncio.StreamReader) -> Response:
        response = Response(self.max_bytes)
        parser = httptools.HttpResponseParser(response)
        total = 0
        while not response.complete:
            data = await reader.read(READ_SIZE)
            if not data:
                if response.headers_done and not response.framed:
                    break  # the body ends with the connection (RFC 9112 §6.3)
                raise FetchFailed("the response ended early")
            total += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserError:
                raise FetchFailed("not an HTTP/1.1 response") from None
            if not response.headers_done and total > MAX_HEAD_BYTES:
                raise FetchFailed("the response head is too large")
            if response.headers_done and not response.status:
                response.status = parser.get_status_code()
            if response.headers_done and response.status != 200:
                break  # refused whatever its body says
            if response.oversize:
                raise FetchFailed(f"the document is over {self.max_bytes} bytes (jwks_max_bytes)")
        return response
