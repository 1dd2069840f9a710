"""Signed service calls: the ``x-internal-*`` headers the services' internal-auth validator checks.

Every request the gateway sends to a service (proxied, aggregated, its own clients, health
checks) carries, when ``INTERNAL_HMAC_SECRET`` is set::

    x-internal-service: api-gateway
    x-internal-timestamp: <epoch ms>                (the validator allows 60 s either way)
    x-internal-nonce: <a new UUIDv4>                (single use at the service for 60 s)
    x-internal-body-hash: <sha256 hex of the body>  (only when there is a body)
    x-internal-signature: hex HMAC-SHA256 of
        {service}:{timestamp}:{nonce}:{METHOD}:{target}:{bodyHash}

``target`` is the path with its query, exactly as on the request line: the services verify
against their framework's ``request.url``. For a request without a body the validator puts
``""`` in the string and wants no body-hash header (or an empty one): a hash of ``{}`` or of
the empty string would be refused as a mismatch. The validator hashes a JSON body as
``JSON.stringify`` of what it parsed: for the compact JSON browsers send that is the bytes
sent; otherwise the hash is of that re-written form (``js_json.py``), up to
``CANONICAL_MAX_BYTES`` (beyond it, of the bytes: send large JSON compact). The body itself is
never changed. A body still arriving when the head goes out cannot be hashed: ``UpstreamCall``
reads one whole first when it is at most ``internal_auth.max_buffered_body_bytes``
(``buffer_body``); a larger one goes out streaming (``None`` here), signed the way the
validator treats a body it did not parse (a file upload), as no body.

The legacy format (``USE_NEW_HMAC=false``) is the original gateway's: three headers, the
signature over ``{service}:{timestamp}:{METHOD}:{target}:{body}`` with the body itself (as
``JSON.stringify`` writes it, ``{}`` when there is none), no nonce.

Built once at start-up; ``headers`` runs per attempt (a retry gets a fresh nonce and timestamp).
"""

from __future__ import annotations

import _hashlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from api_gateway.config.settings import InternalAuthConfig
from api_gateway.js_json import restringify
from api_gateway.types import BodySource, Headers, Request

log = logging.getLogger("api_gateway")

SERVICE_NAME: Final = "api-gateway"
SERVICE: Final = b"x-internal-service"
TIMESTAMP: Final = b"x-internal-timestamp"
NONCE: Final = b"x-internal-nonce"
BODY_HASH: Final = b"x-internal-body-hash"
SIGNATURE: Final = b"x-internal-signature"
LEGACY_EMPTY_BODY: Final = b"{}"
VARIANTS: Final[tuple[bytes, ...]] = (b"8", b"9", b"a", b"b")
CONTENT_TYPE: Final = b"content-type"
JSON_TYPE: Final = b"application/json"
# Re-writing JSON as JavaScript does costs ~1 us a value on the loop: larger bodies are hashed
# as sent.
CANONICAL_MAX_BYTES: Final = 64 * 1024


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def uuid4(random16: bytes) -> bytes:
    """RFC 4122 version 4 text of 16 random bytes: the version digit set to 4, the variant digit
    one of 8, 9, a, b, without building a ``uuid.UUID``."""
    text = random16.hex().encode("ascii")
    variant = VARIANTS[random16[8] & 3]
    return b"-".join((text[:8], text[8:12], b"4" + text[13:16], variant + text[17:20], text[20:]))


class Signer:
    """Signs one attempt of a request to a service; the key is prepared once."""

    __slots__ = ("clock_ms", "legacy", "mac", "max_body_bytes", "random", "service")

    def __init__(
        self,
        secret: bytes,
        legacy: bool = False,
        clock_ms: Callable[[], int] = wall_clock_ms,
        random: Callable[[int], bytes] = os.urandom,
        service: str = SERVICE_NAME,
        max_body_bytes: int = 1024 * 1024,
    ) -> None:
        # OpenSSL's HMAC, keyed once and copied per message: 17 k instructions a signature
        # under callgrind, against 27 k for ``hmac.new`` (the key's pads hashed each time).
        self.mac = _hashlib.hmac_new(secret, digestmod="sha256")
        self.legacy = legacy
        self.max_body_bytes = max_body_bytes  # a streaming body up to this is read to sign it
        self.clock_ms, self.random = clock_ms, random
        self.service = service.encode("ascii")

    def headers(
        self, method: str, target: bytes, body: bytes | None, json: bool = False
    ) -> Headers:
        """The signing headers for one attempt. ``body`` is the bytes sent, None while unknown
        (a stream); ``json``: they are ``application/json``, which the service parses."""
        timestamp = b"%d" % self.clock_ms()
        verb = method.upper().encode("ascii")
        service = self.service
        if body and json and len(body) <= CANONICAL_MAX_BYTES:
            body = restringify(body) or body  # what the validator hashes (not JSON: as sent)
        if self.legacy:
            text = body if body else LEGACY_EMPTY_BODY
            message = b"%s:%s:%s:%s:%s" % (service, timestamp, verb, target, text)
            return [
                (SERVICE, service),
                (TIMESTAMP, timestamp),
                (SIGNATURE, self._sign(message)),
            ]
        nonce = uuid4(self.random(16))
        digest = hashlib.sha256(body).hexdigest().encode("ascii") if body else b""
        message = b"%s:%s:%s:%s:%s:%s" % (service, timestamp, nonce, verb, target, digest)
        headers = [(SERVICE, service), (TIMESTAMP, timestamp), (NONCE, nonce)]
        if digest:
            headers.append((BODY_HASH, digest))
        headers.append((SIGNATURE, self._sign(message)))
        return headers

    def _sign(self, message: bytes) -> bytes:
        mac = self.mac.copy()
        mac.update(message)
        return mac.hexdigest().encode("ascii")


def is_json(headers: Headers) -> bool:
    """Whether the body is ``application/json`` (parameters aside), as the services' framework
    decides to parse it."""
    for name, value in headers:
        if name == CONTENT_TYPE:
            return value.split(b";", 1)[0].strip().lower() == JSON_TYPE
    return False


def open_signer(config: InternalAuthConfig) -> Signer | None:
    """The signer every service call uses, or None (and one warning) without a secret."""
    if not config.secret:
        log.warning(
            "calls to services are not signed: INTERNAL_HMAC_SECRET is not set, so services "
            "that verify x-internal-signature will refuse them"
        )
        return None
    return Signer(
        config.secret.encode(),
        legacy=not config.new_hmac,
        max_body_bytes=config.max_buffered_body_bytes,
    )


async def buffer_body(request: Request, limit: int) -> None:
    """Read a streaming request body whole when it is at most ``limit`` bytes, so that its hash
    can be signed (and it can be sent again on a retry); a larger one stays a stream, with the
    chunks read so far put back in front of it."""
    body = request.body
    if isinstance(body, bytes) or (
        request.content_length is not None and request.content_length > limit
    ):
        return
    chunks: list[bytes] = []
    size = 0
    iterator = body.__aiter__()
    async for chunk in iterator:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:  # chunked, and larger than it may be held: send it on as it comes
            request.body = Prefixed(chunks, body, iterator)
            return
    request.body = b"".join(chunks)
    request.content_length = size


class Prefixed:
    """A stream whose first chunks were already read from it."""

    __slots__ = ("chunks", "iterator", "source")

    def __init__(
        self, chunks: list[bytes], source: BodySource, iterator: AsyncIterator[bytes]
    ) -> None:
        self.chunks, self.source = chunks, source
        self.iterator = iterator

    def __aiter__(self) -> Prefixed:
        return self

    async def __anext__(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        return await self.iterator.__anext__()

    def abort(self) -> None:
        self.source.abort()
