"""Rate-limit keys: a key spec (``ip``, ``[user, body:eventId]``...) compiled at start-up into
one function ``Request -> str | None``.

A key is the spec's canonical text, then each part's value, length-prefixed (``5:alice``) or,
past ``MAX_VALUE_CHARS``, a digest (``#<hex>``): neither a separator inside a value nor a long
value can make two different requests share a bucket or a key grow without bound. ``None``
means the request lacks a part (an anonymous request for ``user``, no such header, no such body
field) and is not counted by that limit.

Pure: no I/O, nothing of the configuration but the spec; the address part keys IPv6 clients by
their prefix (``AddressKeys``), exactly as the per-address limit does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

import orjson

from api_gateway.config.limits import parse_part, spec_text
from api_gateway.network import AddressKeys
from api_gateway.types import Request

# A value longer than this is replaced by a digest: keys stay small whatever a client sends.
MAX_VALUE_CHARS: Final = 64
DIGEST_CHARS: Final = 32

KeyFunction = Callable[[Request], str | None]


def bounded(value: str) -> str:
    """``value`` length-prefixed, or its digest when long: injective either way (a prefixed
    value starts with a digit, a digest with ``#``)."""
    if len(value) <= MAX_VALUE_CHARS:
        return f"{len(value)}:{value}"
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return "#" + digest[:DIGEST_CHARS]


class Part:
    """One part of a key: a value read from the request, or None when the request lacks it."""

    def value(self, request: Request) -> str | None:
        raise NotImplementedError


class AddressPart(Part):
    __slots__ = ("addresses",)

    def __init__(self, addresses: AddressKeys) -> None:
        self.addresses = addresses

    def value(self, request: Request) -> str | None:
        return self.addresses(request.client_ip)


class UserPart(Part):
    """The authenticated identity: a token's user, or an API key (``key:<id>``)."""

    def value(self, request: Request) -> str | None:
        claims = request.claims
        return None if claims is None else claims.user_id


class UserOrAddressPart(Part):
    __slots__ = ("addresses",)

    def __init__(self, addresses: AddressKeys) -> None:
        self.addresses = addresses

    def value(self, request: Request) -> str | None:
        claims = request.claims
        # The first letter keeps a user id from ever equalling an address.
        if claims is None:
            return "i" + self.addresses(request.client_ip)
        return "u" + claims.user_id


class TenantPart(Part):
    def value(self, request: Request) -> str | None:
        claims = request.claims
        return None if claims is None or not claims.tenant_id else claims.tenant_id


class ApiKeyPart(Part):
    def value(self, request: Request) -> str | None:
        claims = request.claims
        return None if claims is None or not claims.key_id else claims.key_id


class HeaderPart(Part):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name.lower().encode("ascii")

    def value(self, request: Request) -> str | None:
        found = request.header(self.name)
        return None if found is None else found.decode("latin-1")


class PathPart(Part):
    """One segment of an endpoint's path template (``/events/{eventId}/hold``), read from the
    canonical path the same way endpoints match it: without ``;parameters``, lower-cased."""

    __slots__ = ("index", "prefix_length")

    def __init__(self, prefix_length: int, index: int) -> None:
        self.prefix_length, self.index = prefix_length, index

    def value(self, request: Request) -> str | None:
        segments = request.path[self.prefix_length :].split("/")
        if self.index >= len(segments):
            return None
        segment = segments[self.index].split(";", 1)[0].lower()
        return segment or None


class BodyPart(Part):
    """A top-level field of the JSON body JsonBody has already read and bounded. A string and
    the same digits as a number are one value (a service reads both alike); any other value is
    keyed by its JSON text; no body, no such field or ``null``: the request lacks the part."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def value(self, request: Request) -> str | None:
        body = request.body
        if not isinstance(body, bytes) or not body:
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict):
            return None
        found = document.get(self.field)
        if found is None:
            return None
        if isinstance(found, str):
            return "v" + found
        if isinstance(found, int) and not isinstance(found, bool):
            return "v" + str(found)
        return "j" + orjson.dumps(found, option=orjson.OPT_SORT_KEYS).decode()


class CompositeKey:
    """Every part's value, bounded and concatenated after the spec's text."""

    __slots__ = ("namespace", "parts")

    def __init__(self, namespace: str, parts: list[Part]) -> None:
        self.namespace, self.parts = namespace, parts

    def __call__(self, request: Request) -> str | None:
        pieces = [self.namespace]
        for part in self.parts:
            value = part.value(request)
            if value is None:
                return None
            pieces.append(bounded(value))
        return "".join(pieces)


def compile_key(
    parts: Sequence[str],
    addresses: AddressKeys,
    prefix_length: int = 0,
    template: Sequence[str] = (),
) -> CompositeKey:
    """The key function of a spec already validated by the configuration (config/limits.py).

    ``template`` is the endpoint path's segments (``["", "events", "{eventId}"]``) a ``path:``
    part reads from, ``prefix_length`` the length of the route prefix before it."""
    built: list[Part] = []
    for text in parts:
        kind, argument = parse_part(text)
        if kind == "ip":
            built.append(AddressPart(addresses))
        elif kind == "user":
            built.append(UserPart())
        elif kind == "user_or_ip":
            built.append(UserOrAddressPart(addresses))
        elif kind == "tenant":
            built.append(TenantPart())
        elif kind == "api_key":
            built.append(ApiKeyPart())
        elif kind == "header":
            built.append(HeaderPart(argument))
        elif kind == "path":
            built.append(PathPart(prefix_length, list(template).index("{" + argument + "}")))
        else:
            built.append(BodyPart(argument))
    return CompositeKey(spec_text(parts), built)
