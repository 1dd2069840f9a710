"""The production mix's traffic: users (each with a token and an address), the request kinds and
their shares, the distributions, and the files ``bench/mix.lua`` loads into wrk.

All sampling happens here, in Python, with a fixed seed, so every run sends the same requests and
wrk's per-request work stays a table lookup.
"""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from gwbench.servers import SMALL_BODY, mint_token

VARIANTS = 4096  # request variants the sequence codes address; must match bench/mix.lua
# Requests before a sequence wraps: about two runs' worth. Longer costs wrk more to load at
# start (counted in its CPU share, not in any proxy's CPU).
SEQUENCE_LENGTH = 1 << 18
ZIPF_S = 1.1
TENANTS = 20  # users belong to a few tenants, as on the platform (the response cache is per tenant)
TOKEN_TTL_S = 7 * 86400
HOST = "127.0.0.1"  # a platform domain: no venue-domain lookup
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari/605.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
    "TicketToken/4.2 (iOS 18.1; iPhone15,2)",
    "TicketToken/4.2 (Android 14; Pixel 8)",
)


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix, with its share and the variants it is drawn from."""

    key: str
    label: str
    share: float
    method: str
    authenticated: bool  # sends the user's token (public paths are browsed anonymously)
    paths: tuple[str, ...]
    bodies: tuple[str, ...] = ()  # JSON bodies (POST): variant i sends bodies[i % len]


def qr_body(i: int) -> str:
    event = f"6f1c2a3e-4b5d-4e6f-8a7b-{i:012d}"
    payload = {"qrCode": f"TT-QR-{i:08d}-7c1e9b", "eventId": event, "entrance": f"gate {i % 8}"}
    return json.dumps(payload, separators=(",", ":"))


KINDS = (
    Kind(
        "get",
        "protected GET /api/v1/tickets/<id> (1,000 ids)",
        0.70,
        "GET",
        True,
        tuple(f"/api/v1/tickets/{i}" for i in range(1, 1001)),
    ),
    Kind(
        "cached",
        "cached GET /api/v1/events/<id> (100 ids; upstream says public, max-age=300)",
        0.10,
        "GET",
        True,
        tuple(f"/api/v1/events/{i}" for i in range(1, 101)),
    ),
    Kind(
        "public",
        "public GET /api/v1/search?q=<term> (200 terms, anonymous)",
        0.10,
        "GET",
        False,
        tuple(f"/api/v1/search?q=concert+{i}&page=1&limit=20" for i in range(1, 201)),
    ),
    Kind(
        "post",
        "JSON POST /api/v1/tickets/validate-qr (schema-validated, 100 bodies)",
        0.10,
        "POST",
        True,
        ("/api/v1/tickets/validate-qr",) * 100,
        tuple(qr_body(i) for i in range(100)),
    ),
)


@dataclass(frozen=True)
class Variant:
    kind: Kind
    path: str
    body: str | None
    agent: str

    def head(self) -> str:
        line = f"{self.kind.method} {self.path} HTTP/1.1\r\n"
        return f"{line}Host: {HOST}\r\nUser-Agent: {self.agent}\r\n"

    def tail(self) -> str:
        if self.body is None:
            return "\r\n"
        size = len(self.body.encode())
        return f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n{self.body}"


def variants() -> list[Variant]:
    found: list[Variant] = []
    for kind in KINDS:
        for i, path in enumerate(kind.paths):
            body = kind.bodies[i % len(kind.bodies)] if kind.bodies else None
            found.append(Variant(kind, path, body, AGENTS[len(found) % len(AGENTS)]))
    assert len(found) <= VARIANTS
    return found


def kind_ranges(table: Sequence[Variant]) -> dict[str, tuple[int, int]]:
    """Kind key -> (its first variant's index, how many variants it has)."""
    ranges: dict[str, tuple[int, int]] = {}
    for index, variant in enumerate(table):
        first, count = ranges.get(variant.kind.key, (index, 0))
        ranges[variant.kind.key] = (first, count + 1)
    return ranges


VARIANT_TABLE = variants()
KIND_RANGES = kind_ranges(VARIANT_TABLE)


def address(user: int) -> str:
    """User ``user``'s own client address: 10.0.0.1, 10.0.0.2, ... (16 million of them)."""
    n = user + 1
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def token(user: int) -> str:
    return mint_token(f"user-{user:07d}", f"tenant-{user % TENANTS:02d}", TOKEN_TTL_S)


def write_users(path: Path, first: int, count: int) -> Path:
    """``count`` users from global number ``first`` on: a token and an address each."""
    with open(path, "w") as out:
        for user in range(first, first + count):
            out.write(f"{token(user)}\t{address(user)}\n")
    return path


def lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "\\r").replace("\n", "\\n") + '"'


def write_variants(path: Path) -> Path:
    rows = [
        f"{{{lua_string(v.head())}, {lua_string(v.tail())}, {str(v.kind.authenticated).lower()}}}"
        for v in VARIANT_TABLE
    ]
    path.write_text("return {\n" + ",\n".join(rows) + "\n}\n")
    return path


def pick_variants(rng: random.Random, length: int) -> list[int]:
    kinds = rng.choices(KINDS, weights=[kind.share for kind in KINDS], k=length)
    picks = []
    for kind in kinds:
        first, count = KIND_RANGES[kind.key]
        picks.append(first + rng.randrange(count))
    return picks


def pick_users(rng: random.Random, distribution: str, users: int, length: int) -> list[int]:
    """``zipf``: rank k is chosen with weight 1/k^s (ranks given to users in a random order);
    ``uniform``: every user alike; ``walk``: every user once, in a random order, then again."""
    if distribution == "zipf":
        cumulative = list(accumulate(1.0 / k**ZIPF_S for k in range(1, users + 1)))
        ranks = rng.choices(range(users), cum_weights=cumulative, k=length)
        order = list(range(users))
        rng.shuffle(order)
        return [order[rank] for rank in ranks]
    if distribution == "uniform":
        return [rng.randrange(users) for _ in range(length)]
    if distribution == "walk":
        picks: list[int] = []
        while len(picks) < length:
            one_pass = list(range(users))
            rng.shuffle(one_pass)
            picks += one_pass
        return picks[:length]
    raise ValueError(f"unknown distribution {distribution!r}")


def write_sequence(
    path: Path, distribution: str, users: int, length: int = SEQUENCE_LENGTH, seed: int = 19
) -> Path:
    rng = random.Random(f"{seed}:{distribution}:{users}")
    codes = zip(
        pick_users(rng, distribution, users, length), pick_variants(rng, length), strict=True
    )
    path.write_text("".join(f"{user * VARIANTS + variant}\n" for user, variant in codes))
    return path


def check_kinds(port: int, user: int, cache_expected: bool) -> list[str]:
    """Send one request of every kind as ``user``; return what did not answer as expected
    (200 with the upstream's body; on a gateway, a repeated cached GET is an X-Cache HIT)."""
    problems = []
    for kind in KINDS:
        first, _ = KIND_RANGES[kind.key]
        variant = VARIANT_TABLE[first]
        tries = 2 if kind.key == "cached" and cache_expected else 1
        for attempt in range(tries):
            status, headers, body = send(port, variant, user)
            if status != 200 or body != SMALL_BODY.encode():
                problems.append(
                    f"{kind.key}: {variant.kind.method} {variant.path} -> {status} {body[:200]!r}"
                )
                break
            if attempt == 1 and headers.get("x-cache") != "HIT":
                problems.append(
                    f"cached: repeated GET {variant.path} was not a cache hit {headers}"
                )
    return problems


def send(port: int, variant: Variant, user: int) -> tuple[int, dict[str, str], bytes]:
    headers = {"Host": HOST, "User-Agent": variant.agent, "X-Forwarded-For": address(user)}
    if variant.kind.authenticated:
        headers["Authorization"] = f"Bearer {token(user)}"
    if variant.body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(variant.kind.method, variant.path, body=variant.body, headers=headers)
        response = conn.getresponse()
        found = {name.lower(): value for name, value in response.getheaders()}
        return response.status, found, response.read()
    except OSError as exc:
        return 0, {}, str(exc).encode()
    finally:
        conn.close()


def describe_shares() -> str:
    return "; ".join(f"{kind.share * 100:.0f} % {kind.label}" for kind in KINDS)
