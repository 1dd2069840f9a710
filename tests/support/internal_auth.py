"""The services' internal-auth check, as the platform's shared HMAC validator does it, written
from its behaviour (not from the gateway's signing code), and an upstream that applies it.

What a service does with ``USE_NEW_HMAC=true`` (shared ``hmac/validator.ts`` behind the Fastify
``internalAuthMiddlewareNew``), in its order:

1. ``x-internal-service``, ``-timestamp``, ``-nonce`` and ``-signature`` are required;
2. the timestamp is integer epoch ms, at most 60 s old and at most 60 s ahead;
3. the nonce is at least 16 characters and used once (per calling service, kept 60 s);
4. the body hash is computed from the body *as the framework parsed it*: nothing parsed (no
   body, or a multipart upload, which the handler streams) is ``""``; a JSON body is hashed as
   ``JSON.stringify`` of the parsed value; a text body as its text. A body that is there needs
   the ``x-internal-body-hash`` header, and a header that is there must equal the computed hash;
5. the signature is the hex HMAC-SHA256 of
   ``service:timestamp:nonce:METHOD:url:computedHash`` with ``url`` the raw request target
   (path and query), compared in constant time.

The legacy check is the original gateway's own verifier: a 5-minute window and
``service:timestamp:METHOD:url:JSON.stringify(body || {})``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

from support.upstream import RecordedRequest, RecordingUpstream, Reply

WINDOW_MS = 60_000
LEGACY_WINDOW_MS = 300_000
MIN_NONCE_CHARS = 16


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parsed_body_text(record: RecordedRequest) -> str | None:
    """The body as the service's framework hands it over, re-serialised as the validator does
    (``JSON.stringify`` of a parsed JSON body); None when nothing was parsed."""
    content_type = (record.header("content-type") or "").split(";")[0].strip().lower()
    if not record.body or content_type.startswith("multipart/"):
        return None  # a file upload is read by the handler as a stream, not parsed before
    text = record.body.decode("utf-8")
    if content_type == "application/json":
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    return text


def _hex_hmac(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class InternalAuthCheck:
    """One service's validator: its secret and the nonces it has seen."""

    def __init__(self, secret: str, legacy: bool = False) -> None:
        self.secret, self.legacy = secret, legacy
        self.seen: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def verify(self, record: RecordedRequest, received_ms: int) -> str | None:
        """None when the service would accept the request, else why it refuses it."""
        if self.legacy:
            return self._verify_legacy(record, received_ms)
        service = record.header("x-internal-service")
        timestamp = record.header("x-internal-timestamp")
        nonce = record.header("x-internal-nonce")
        signature = record.header("x-internal-signature")
        if not (service and timestamp and nonce and signature):
            return "missing headers"
        if not timestamp.isdigit():
            return "invalid timestamp"
        if abs(received_ms - int(timestamp)) > WINDOW_MS:
            return "timestamp outside the window"
        if len(nonce) < MIN_NONCE_CHARS:
            return "invalid nonce"
        with self.lock:
            if (service, nonce) in self.seen:
                return "nonce reused"
            self.seen.add((service, nonce))
        text = parsed_body_text(record)
        expected_hash = "" if text is None else hashlib.sha256(text.encode()).hexdigest()
        sent_hash = record.header("x-internal-body-hash")
        if text is not None and not sent_hash:
            return "body hash required"
        if sent_hash and sent_hash != expected_hash:
            return "body hash mismatch"
        payload = ":".join(
            (service, timestamp, nonce, record.method.upper(), record.target, expected_hash)
        )
        if not hmac.compare_digest(_hex_hmac(self.secret, payload), signature):
            return "invalid signature"
        return None

    def _verify_legacy(self, record: RecordedRequest, received_ms: int) -> str | None:
        service = record.header("x-internal-service")
        timestamp = record.header("x-internal-timestamp")
        signature = record.header("x-internal-signature")
        if not (service and timestamp and signature):
            return "missing headers"
        if not timestamp.isdigit() or abs(received_ms - int(timestamp)) > LEGACY_WINDOW_MS:
            return "request expired"
        text = parsed_body_text(record)
        payload = f"{service}:{timestamp}:{record.method}:{record.target}:{text or '{}'}"
        if not hmac.compare_digest(_hex_hmac(self.secret, payload), signature):
            return "invalid signature"
        return None


class VerifyingUpstream(RecordingUpstream):
    """A recording upstream that answers 401 to what the services' validator would refuse;
    ``verdicts`` holds each request's (None: accepted), in arrival order."""

    def __init__(self, name: str, check: InternalAuthCheck) -> None:
        super().__init__(name)
        self.check = check
        self.verdicts: list[str | None] = []
        self.arrivals: dict[int, int] = {}

    def _record(self, record: RecordedRequest) -> None:
        self.arrivals[id(record)] = now_ms()  # the head's arrival is what the window measures
        super()._record(record)

    def reply_for(self, record: RecordedRequest) -> Reply:
        verdict = self.check.verify(record, self.arrivals.pop(id(record), now_ms()))
        with self._changed:
            self.verdicts.append(verdict)
        if verdict is not None:
            body = json.dumps({"error": "Unauthorized", "message": verdict}).encode()
            return Reply(401, (("content-type", "application/json"),), body)
        return super().reply_for(record)
