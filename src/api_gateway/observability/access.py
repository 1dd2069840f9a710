"""The access log: one JSON line per request, written in batches once per loop iteration
so that logging costs one ``write`` per burst, not one per request.

What a line says: request id, method, path, route template, status, duration, client IP, the
upstream instance, the number of attempts and the time spent on them (``upstream_ms``, when an
upstream was called), tenant and user (from the verified token), the cache's verdict, the rate
limits' outcome, body bytes in and out, the user agent, the trace id when tracing is on, and on
a 5xx the gateway made itself its ``reason`` (``errors.py``: ``connect_refused``,
``upstream_timeout``, ``breaker_open``...). Never a header value the client sent (no
Authorization, cookie or token) and never a body, but for two: the User-Agent (at most 256
bytes) and the client's own X-Correlation-ID (``client_correlation_id``, escaped, at most 128
bytes), which the gateway replaces with the request id and keeps only here, so a client's trace
can still be found.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import BinaryIO, Final

from api_gateway.memo import Memo
from api_gateway.types import Request, Response

# One f-string (the cheapest way Python has to build a string) replaces building and encoding
# a dict for every request. The fields are nearly always JSON-safe already (a validated request
# id, an llhttp-checked method, a canonical path, a canonical IP address, claims checked by
# tokens.safe_claim, fixed words), but "nearly" is not a guarantee a log can rest on: one cheap
# test of all the string fields together, and each is escaped only when that test fails. The time is
# read once per batch, when it is written: every line of a batch is recorded in the same loop
# iteration.
TIME: Final = '{"time":%d,'
# ``Request.limit_at``: where the reported limit's headers are (>= 0), or why there are none.
LIMIT_OUTCOMES: Final = {-1: "", -2: "refused", -3: "unavailable"}
QUOTED_CACHE_SIZE: Final = 4096
# How much of a client's User-Agent a line keeps.
MAX_USER_AGENT: Final = 256
THREE_DIGITS: Final = tuple(f"{n:03d}" for n in range(1000))
# What JSON holds as it is: printable ASCII but '"' and '\\'. The table maps each of these to
# itself and every other byte to another one, so ``translate`` returns its very input exactly
# when a field needs no escaping (one table lookup per byte, no table built per call).
SAFE_BYTES: Final = frozenset(b for b in range(0x20, 0x7F) if b not in b'"\\')
UNSAFE_MOVED: Final = bytes([b if b in SAFE_BYTES else (b + 1) % 256 for b in range(256)])


def _needs_escape(encoded: bytes) -> bool:
    return encoded.translate(UNSAFE_MOVED) is not encoded


class AccessLog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: BinaryIO | None = None,
        sample_rate: float = 1.0,
        draw: random.Random | None = None,
    ) -> None:
        self.loop = loop
        self.stream = stream or sys.stdout.buffer
        self.pending: list[str] = []
        self.sample_rate = sample_rate
        self.draw = (draw or random.Random()).random
        # Instance authorities come from configuration or the registry: quoted once each. User
        # agents are few (a client sends the same one every time): escaped and quoted once each.
        self.quoted: Memo[str, str] = Memo(QUOTED_CACHE_SIZE)
        self.agents: Memo[bytes, str] = Memo(QUOTED_CACHE_SIZE)

    def record(
        self,
        request: Request,
        response: Response,
        duration_ms: str,
        outcome: str = "",
        received: int = 0,
        sent: int = 0,
        reason: str = "",
    ) -> None:
        """One line; ``duration_ms`` is already formatted (``%.3f``), as in X-Response-Time.
        ``outcome`` says how a stream or a tunnel ended (only those have one); ``received`` and
        ``sent``, the body bytes from the client and to it (a tunnel's: relayed each way);
        ``reason``, why the gateway answered a 5xx itself (``GatewayError.reason``).

        Below a sample rate of 1, a share of the requests is left out; a 5xx never is.
        """
        status = response.status
        if self.sample_rate < 1.0 and status < 500 and self.draw() >= self.sample_rate:
            return
        upstream = self.quoted.young.get(request.upstream) or self.quote(request.upstream)
        agent = request.user_agent
        user_agent = self.agents.young.get(agent) or self.quote_agent(agent)
        claims = request.claims
        tenant, user = ("", "") if claims is None else (claims.tenant_id, claims.user_id)
        request_id, method, path = request.request_id, request.method, request.path
        route, client_ip, cache = request.route, request.client_ip, request.cache
        # One string, one encode and one table scan: about 0.14 µs per line, where isprintable()
        # alone cost 0.35 µs and a translate that deletes (building its table each call) 0.2 µs.
        fields = f"{request_id}{method}{path}{route}{client_ip}{tenant}{user}{cache}"
        if not fields.isascii() or _needs_escape(fields.encode()):
            # A quote is legal in a request target and survives normalization, and an address
            # or a route label could hold anything: escaped, or it would end its field and let
            # a client write fields of its own.
            request_id, method, path = escape(request_id), escape(method), escape(path)
            route, client_ip, cache = escape(route), escape(client_ip), escape(cache)
            tenant, user = escape(tenant), escape(user)
        at = request.limit_at
        attempts = request.attempts
        # What only some lines have, from the end: tested one by one, joined once.
        tail = "}"
        if request.client_correlation_id:
            # The client's own X-Correlation-ID (replaced by the request id everywhere else):
            # any text a client chose, so always escaped.
            tail = f',"client_correlation_id":"{escape(request.client_correlation_id)}"}}'
        if outcome:
            tail = f',"outcome":"{outcome}"{tail}'
        if request.trace_id:
            tail = f',"trace_id":"{request.trace_id}"{tail}'
        if reason and status >= 500:
            tail = f',"reason":"{reason}"{tail}'
        if attempts:
            # Milliseconds with three decimals, from whole microseconds: formatting a float
            # costs about 2,000 instructions, an int and a table lookup a tenth of that.
            whole, micros = divmod(int(request.upstream_ms * 1000 + 0.5), 1000)
            tail = f',"upstream_ms":{whole}.{THREE_DIGITS[micros]}{tail}'
        line = (
            f'"level":"info","msg":"request","request_id":"{request_id}",'
            f'"method":"{method}","path":"{path}","route":"{route}",'
            f'"status":{status},"duration_ms":{duration_ms},'
            f'"client_ip":"{client_ip}","upstream":{upstream},'
            f'"attempts":{attempts},"tenant":"{tenant}","user":"{user}",'
            f'"cache":"{cache}",'
            f'"limit":"{"allowed" if at >= 0 else LIMIT_OUTCOMES.get(at, "")}",'
            f'"bytes_in":{received},"bytes_out":{sent},"user_agent":{user_agent}{tail}'
        )
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(line)

    def quote(self, authority: str) -> str:
        quoted = self.quoted.get(authority)  # from the memo's old generation, if it is there
        if quoted is None:
            quoted = '"' + escape(authority) + '"'
            self.quoted.put(authority, quoted)
        return quoted

    def quote_agent(self, agent: bytes) -> str:
        found = self.agents.get(agent)  # from the memo's old generation, if it is there
        if found is not None:
            return found
        quoted = '"' + escape(agent[:MAX_USER_AGENT].decode("latin-1")) + '"'
        if len(agent) > MAX_USER_AGENT:
            # Not kept: the memo's keys would be whole header values (4,096 of 16 KiB each).
            return quoted
        self.agents.put(agent, quoted)
        return quoted

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            start = TIME % (time.time() * 1000)
            self.stream.write((start + ("\n" + start).join(pending) + "\n").encode())
            self.stream.flush()


def escape(text: str) -> str:
    """``text`` as the inside of a JSON string, in ASCII: a lone surrogate (which orjson and
    UTF-8 refuse) is written as its escape rather than failing the whole batch."""
    return json.dumps(text)[1:-1]
