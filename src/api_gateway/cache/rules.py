"""What may be cached, for how long, and under which key: pure functions, no I/O, no clock.

Storable: a 200, 203 or 204 answer to GET, without ``Set-Cookie``, whose ``Cache-Control`` has
none of ``no-store``, ``private``, ``no-cache``, and whose ``Vary`` is neither ``*`` nor names a
header made anew for every request (``X-Request-Id``), which no later request could match. Its
lifetime is ``s-maxage``, else ``max-age``, else ``Expires`` less ``Date``, else the route's
``ttl_ms`` (0: not stored), less the upstream's ``Age``, capped by ``max_ttl_ms``. Every line of
a field counts, never the first alone: directives of all ``Cache-Control`` lines combine, and
of several ``Age``, ``Expires`` or ``Date`` values the reading that gives the shortest lifetime
wins. A request with credentials (``Authorization``,
``Cookie``) on a route not keyed per user is shared by the tenant's users, so, as RFC 9111 §3.5
asks of shared caches, its answer is stored only when marked ``public`` or given ``s-maxage``
(or the route sets ``ttl_ms``, the operator's explicit consent). A request with a body, a range
or a condition is neither answered from the cache nor stored.

Keys: ``cache:{<resource>}:<generation>:<digest>``. The resource is the route prefix plus the
first segment below it (``/api/v1/events/42`` for ``/api/v1/events/42/tickets``), a segment
longer than 128 characters replaced by ``#`` and its digest, so no key is long; the digest
covers the method, the canonical path, the query with its parameters sorted by name, the origin
the upstream was told the client used (canonical host, scheme, port) and the venue domain
routing resolved (``view.origin``), the tenant and, on ``per_user`` routes, the user. ``Vary`` is
read against the headers the upstream received (``view.vary_values``). The hash tag keeps a
resource's keys in one Redis Cluster slot. A write gives its resource and the route's collection
new generations, so older entries become unreachable and expire on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from hashlib import blake2b
from typing import Final

from api_gateway.cache import view
from api_gateway.memo import Memo
from api_gateway.types import Headers, Request

STORABLE_STATUSES: Final = frozenset({200, 203, 204})
READS: Final = frozenset({"GET", "HEAD"})
# Requests the cache does not answer: a hit would be the wrong answer (a part, or not a 304).
BYPASS_HEADERS: Final = frozenset(
    {b"range", b"if-range", b"if-none-match", b"if-modified-since", b"if-match"}
    | {b"if-unmodified-since"}
)
CREDENTIALS: Final = frozenset({b"authorization", b"cookie"})
PUBLIC_TENANT: Final = "public"
# A resource's first segment is the client's, up to the head limit; it names the generation
# memo's entries and every Redis key of the resource. Longer than any real id (a UUID is 36),
# it is replaced by ``#`` and a 128-bit digest: 5,000 distinct 7 KiB segments grew a worker by
# 34 MiB through the memo alone. ``#`` never occurs in a canonical path, so a digest never
# names a real segment.
MAX_RESOURCE_SEGMENT: Final = 128
# "Sunday, 06-Nov-1994 08:49:37 GMT" is 33 bytes: a longer value is no date (and not parsed).
MAX_HTTP_DATE: Final = 64
# RFC 9111 §1.2.2: the value a cache uses for any larger delta-seconds (fits the entry's 32 bits).
MAX_DELTA_SECONDS: Final = 2**31
# The 4-byte length prefixes of the digest's parts shorter than 256 bytes, which most parts are.
TABLED_LENGTHS: Final = 256
LENGTH_PREFIXES: Final[tuple[bytes, ...]] = tuple(
    n.to_bytes(4, "big") for n in range(TABLED_LENGTHS)
)
GET_PART: Final = b"\x00\x00\x00\x03GET"  # b"GET" after its length
# Digests by their input. Bounded in count and in bytes: a longer input (a long path or query)
# is hashed each time, never remembered, so the memo holds at most about 4.5 MiB per worker.
DIGEST_MEMO_SIZE: Final = 4096
MAX_MEMO_INPUT: Final = 1024
_DIGESTS: Final[Memo[bytes, str]] = Memo(DIGEST_MEMO_SIZE)


@dataclass(frozen=True, slots=True)
class CacheControl:
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    max_age: int | None = None
    s_maxage: int | None = None


def parse_cache_control(value: bytes | None) -> CacheControl:
    """The response directives that matter here; an unreadable age counts as 0 (stale)."""
    if not value:
        return CacheControl()
    flags: set[str] = set()
    ages: dict[str, int] = {}
    for part in value.decode("latin-1").split(","):
        name, _, argument = part.partition("=")
        name = name.strip().lower()
        if name in ("max-age", "s-maxage"):
            seconds = delta_seconds(argument.strip().strip('"'))
            seconds = 0 if seconds is None else seconds
            # Repeated with different values: the shorter one is the safe reading.
            ages[name] = min(seconds, ages.get(name, seconds))
        elif name:
            flags.add(name)
    return CacheControl(
        no_store="no-store" in flags,
        no_cache="no-cache" in flags,
        private="private" in flags,
        public="public" in flags,
        max_age=ages.get("max-age"),
        s_maxage=ages.get("s-maxage"),
    )


def header_value(headers: Headers, name: bytes) -> bytes | None:
    values = [value for key, value in headers if key == name]
    return b", ".join(values) if values else None


def bypasses(request: Request) -> bool:
    """Conditional and range requests go straight through: the cache keeps whole answers.

    So does a request with a body: the key does not hold the body, yet the answer may depend
    on it (a search filter), and a stored one would be served for the bodiless request."""
    return has_body(request) or any(name in BYPASS_HEADERS for name, _ in request.headers)


def has_body(request: Request) -> bool:
    """A declared length above 0, or a chunked body (a stream, or bytes read already)."""
    body = request.body
    return bool(request.content_length) or not isinstance(body, bytes) or len(body) > 0


def carries_credentials(request: Request) -> bool:
    return request.claims is not None or any(name in CREDENTIALS for name, _ in request.headers)


@dataclass(frozen=True, slots=True)
class Freshness:
    ttl_ms: int  # how much longer the answer may be served
    age_s: int  # how old the upstream said it already was (its Age)


def freshness(
    status: int, headers: Headers, default_ttl_ms: int, shared_only: bool, max_ttl_ms: int
) -> Freshness | None:
    """How long an upstream answer may be served from the cache; None: it is not stored.

    ``shared_only``: the request carried credentials and the key is not per user, so only an
    answer the upstream marked shareable may be kept (unless the route sets a default TTL).
    """
    if status not in STORABLE_STATUSES or any(name == b"set-cookie" for name, _ in headers):
        return None
    control = parse_cache_control(header_value(headers, b"cache-control"))
    if control.no_store or control.no_cache or control.private:
        return None
    if vary_names(headers) is None:
        return None
    if control.s_maxage is not None:
        lifetime_ms = control.s_maxage * 1000
    elif shared_only and not control.public and default_ttl_ms == 0:
        return None
    elif control.max_age is not None:
        lifetime_ms = control.max_age * 1000
    else:
        expires_s = expires_lifetime(headers)
        lifetime_ms = default_ttl_ms if expires_s is None else expires_s * 1000
    age_s = _age(header_value(headers, b"age"))
    ttl_ms = min(lifetime_ms - age_s * 1000, max_ttl_ms)
    return Freshness(ttl_ms, age_s) if ttl_ms > 0 else None


def expires_lifetime(headers: Headers) -> int | None:
    """Seconds from ``Date`` to ``Expires`` (RFC 9111 §4.2.1.); None without ``Expires``.

    Every line counts, never the first alone: the earliest ``Expires`` and the latest ``Date``,
    the shortest lifetime they allow. An unreadable ``Expires`` ("0") is a time in the past
    (§5.3); without a readable ``Date`` there is nothing to measure from (the rules have no
    clock): both give 0, so the answer is stored only if ``max-age`` says so."""
    ends = [http_date(value) for key, value in headers if key == b"expires"]
    if not ends:
        return None
    starts = [http_date(value) for key, value in headers if key == b"date"]
    known_ends = [end for end in ends if end is not None]
    known_starts = [start for start in starts if start is not None]
    if len(known_ends) < len(ends) or not starts or len(known_starts) < len(starts):
        return 0
    return max(0, min(known_ends) - max(known_starts))


def http_date(value: bytes) -> int | None:
    """Seconds since the epoch of an HTTP date (any of RFC 9110's three forms), or None."""
    if len(value) > MAX_HTTP_DATE:
        return None
    try:
        parsed = parsedate_tz(value.decode("latin-1"))
        return None if parsed is None else int(mktime_tz(parsed))
    except (OverflowError, ValueError, IndexError, TypeError):
        return None  # the standard library's parser is lenient, but not on everything


def _age(value: bytes | None) -> int:
    """The largest of every ``Age`` line and list member: a second, larger one is as much the
    service's word as the first, and reading the smaller would keep the answer too long.
    (RFC 9111 §5.1 reads the first member; the largest is never fresher than the service
    allows.) Unreadable members are ignored, as §5.1 asks."""
    if not value:
        return 0
    ages = [delta_seconds(member.strip().decode("latin-1")) for member in value.split(b",")]
    return max([age for age in ages if age is not None], default=0)


def delta_seconds(text: str) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2), None if it is not one; beyond 2^31, 2^31, which
    also spares ``int()`` a string of thousands of digits (it raises past 4,300)."""
    if not text.isdigit() or not text.isascii():
        return None
    return MAX_DELTA_SECONDS if len(text) > 10 else min(int(text), MAX_DELTA_SECONDS)


def vary_names(headers: Headers) -> tuple[bytes, ...] | None:
    """The request headers an answer varies on, sorted; None for ``Vary: *`` or a header new
    for every request (never stored: no later request could match it)."""
    value = header_value(headers, b"vary")
    if value is None:
        return ()
    names = {name.strip(b" \t").lower() for name in value.split(b",")} - {b""}
    if b"*" in names or not names.isdisjoint(view.PER_REQUEST):
        return None
    return tuple(sorted(names))


def canonical_query(query: bytes) -> bytes:
    """Parameters sorted by name; repeated names keep their order (it may mean something)."""
    params = [param for param in query.split(b"&") if param]
    params.sort(key=lambda param: param.partition(b"=")[0])
    return b"&".join(params)


def scope(request: Request, per_user: bool) -> tuple[str, str]:
    """The tenant and (on per-user routes) the user a cached answer belongs to."""
    claims = request.claims
    if claims is None:
        return PUBLIC_TENANT, "anonymous" if per_user else ""
    return claims.tenant_id, claims.user_id if per_user else ""


def digest(*parts: bytes) -> str:
    """One hash of length-prefixed parts: no two different part lists give the same input."""
    pieces: list[bytes] = []
    for part in parts:
        add_part(pieces, part)
    return hashed(pieces)


def add_part(pieces: list[bytes], part: bytes) -> None:
    """The part after its length as 4 bytes, big-endian; the usual lengths are read from a
    table (a method call each cost more than the hash itself)."""
    size = len(part)
    pieces.append(LENGTH_PREFIXES[size] if size < TABLED_LENGTHS else size.to_bytes(4, "big"))
    pieces.append(part)


def hashed(pieces: list[bytes]) -> str:
    """The digest of the pieces in order, hashed in one call: the same digest as one update
    per piece (a hash reads its input as one stream), so keys keep their values. Every hit
    asks for a digest asked for before: remembered, it is one lookup (``memo.py``)."""
    data = b"".join(pieces)
    found = _DIGESTS.young.get(data)  # the memo's hit, in place
    return found if found is not None else _digest_new(data)


def _digest_new(data: bytes) -> str:
    found = _DIGESTS.get(data)  # from the old generation, if it is there
    if found is not None:
        return found
    hexed = blake2b(data, digest_size=16).hexdigest()
    if len(data) <= MAX_MEMO_INPUT:
        _DIGESTS.put(data, hexed)
    return hexed


def resource(path: str, prefix: str, collection: str | None = None) -> str:
    """The resource a path belongs to: the prefix and the first segment below it, if any.

    ``collection`` names the resource under the route's own prefix when ``prefix`` is an
    alias of it (``/api/v1/event/42`` is ``/api/v1/events/42``): a write through either
    prefix then makes the answers read through both stale."""
    root = collection or prefix
    segment = path[len(prefix) + 1 :].split("/", 1)[0]
    if len(segment) > MAX_RESOURCE_SEGMENT:
        segment = "#" + blake2b(segment.encode(), digest_size=16).hexdigest()
    return f"{root}/{segment}" if segment else root


def invalidated(path: str, prefix: str, collection: str | None = None) -> tuple[str, ...]:
    """The resources a successful write to ``path`` makes stale: its own and the collection."""
    root = collection or prefix
    own = resource(path, prefix, collection)
    return (own,) if own == root else (own, root)


def generation_key(resource_path: str) -> str:
    return f"cache:{{{resource_path}}}:gen"


def generation_key_of(key: str) -> str:
    """The generation key of an entry's or a variant's key: generation, digest and variant are
    hex, so the tag ends at the last ``}:``, whatever the resource holds."""
    return key.rpartition("}:")[0] + "}:gen"


def entry_key(request: Request, resource_path: str, generation: str, per_user: bool) -> str:
    """The key of the answer to ``request`` (HEAD shares GET's), before any ``Vary``."""
    tenant, user = scope(request, per_user)
    # The input of digest(b"GET", path, query, origin, tenant, user), built in place.
    pieces = [GET_PART]  # HEAD shares GET's answers
    add_part(pieces, request.path.encode())
    add_part(pieces, canonical_query(request.query))
    add_part(pieces, view.origin(request))
    add_part(pieces, tenant.encode())
    add_part(pieces, user.encode())
    return f"cache:{{{resource_path}}}:{generation}:{hashed(pieces)}"


def variant_key(key: str, values: tuple[bytes | None, ...]) -> str:
    """The key of one variant of an answer with ``Vary``: its request headers' values."""
    return f"{key}:{digest(*[b'-' if v is None else b'+' + v for v in values])}"
