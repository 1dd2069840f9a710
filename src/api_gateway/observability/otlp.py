"""OTLP protobuf, written by hand: the few messages a batch of spans needs (pure: bytes out).

An ``ExportTraceServiceRequest`` of one ``ResourceSpans`` (the gateway's resource) holding one
``ScopeSpans`` (scope ``api_gateway``) with the batch's spans, as the OpenTelemetry SDK's
exporter sends them: each span's ids, ``trace_state``, parent, name, kind, times, attributes,
an ``exception`` event for a span that ended in one, its status (unset or error) and its
``flags`` (whether the parent is remote). Field numbers are those of opentelemetry-proto's
``trace/v1/trace.proto``, ``common/v1/common.proto`` and ``resource/v1/resource.proto``; the
tests decode these bytes with the generated classes of opentelemetry-proto.

Written by hand because the generated classes cost far more per span: building a message
object per span, attribute and value before serializing, as the SDK's exporter does, measured
about 165,000 instructions per span; these pieces, about 11,000.
"""

from __future__ import annotations

import struct
from binascii import unhexlify
from collections.abc import Sequence
from typing import Final

from api_gateway.observability.spans import Span

SCOPE_NAME: Final = "api_gateway"
# Span.flags: the SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE bit, and IS_REMOTE for a client's parent.
HAS_IS_REMOTE: Final = 0x100
IS_REMOTE: Final = 0x200
STATUS_UNSET: Final = b"\x7a\x00"  # field 15, an empty Status: code UNSET
STATUS_ERROR: Final = b"\x7a\x02\x18\x02"  # field 15, Status{code (3): ERROR (2)}
FLAGS_TAG: Final = b"\x85\x01"  # field 16, fixed32
LOCAL_FLAGS: Final = struct.pack("<I", HAS_IS_REMOTE)
REMOTE_FLAGS: Final = struct.pack("<I", HAS_IS_REMOTE | IS_REMOTE)
INT64: Final = (1 << 64) - 1
_FIXED64: Final = struct.Struct("<Q")
_TIMES: Final = struct.Struct("<BBBQBQ")
# Every one-byte varint, so that the lengths and values under 128 cost no allocation.
SMALL: Final[tuple[bytes, ...]] = tuple(bytes((n,)) for n in range(128))
MAX_CACHED_INTS: Final = 4096  # per attribute: its memo of encoded ints stays small
HIGH: Final[tuple[bytes, ...]] = tuple(bytes((n | 0x80,)) for n in range(128))  # "more follows"


def varint(value: int) -> bytes:
    if value < 0x80:
        return SMALL[value]
    if value < 0x4000:  # two bytes: a status, a span's length; no loop, no bytearray
        return HIGH[value & 0x7F] + SMALL[value >> 7]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag``: the field number and wire type 2, one byte)."""
    return SMALL[tag] + varint(len(payload)) + payload


def any_value(value: object) -> bytes:
    """An ``AnyValue``: a string, bool, int or float (OTLP's attribute value types)."""
    if isinstance(value, str):
        return field(0x0A, value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value & INT64)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return field(0x0A, str(value).encode("utf-8", "replace"))


def key(name: str) -> bytes:
    """A ``KeyValue``'s key field, built once per attribute name."""
    return field(0x0A, name.encode("utf-8"))


def attribute(encoded_key: bytes, value: object) -> bytes:
    """A ``KeyValue`` (without its own tag)."""
    return encoded_key + field(0x12, any_value(value))


def utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return text.encode("utf-8", "replace")


class Encoder:
    """Encodes batches for one resource; what never changes is encoded once, at start-up, and
    each attribute's bytes before its value once per key and value length (a string's) or once
    per value (a small int's), so that most attributes are one or two pieces to join."""

    def __init__(self, resource: Sequence[tuple[str, str]]) -> None:
        attributes = b"".join([field(0x0A, attribute(key(k), v)) for k, v in resource])
        self.resource = field(0x0A, attributes)  # ResourceSpans.resource (1)
        self.scope = field(0x0A, field(0x0A, SCOPE_NAME.encode()))  # ScopeSpans.scope (1)
        self.keys: dict[str, bytes] = {}
        self.string_heads: dict[str, list[bytes]] = {}
        self.ints: dict[str, dict[int, bytes]] = {}
        self.last_hex = ""  # the last trace id converted, and its bytes (spans come in pairs)
        self.last_bytes = b""

    def encode(self, spans: Sequence[Span]) -> bytes:
        """An ``ExportTraceServiceRequest`` with ``spans``."""
        pieces = [self.scope]
        for span in spans:
            encoded = self.span(span)
            pieces.append(b"\x12")  # ScopeSpans.spans (2)
            pieces.append(varint(len(encoded)))
            pieces.append(encoded)
        scope_spans = field(0x12, b"".join(pieces))  # ResourceSpans.scope_spans (2)
        return field(0x0A, self.resource + scope_spans)  # resource_spans (1)

    def span(self, span: Span) -> bytes:
        trace_id = span.trace_id
        if trace_id != self.last_hex:
            self.last_hex, self.last_bytes = trace_id, unhexlify(trace_id)
        pieces = [b"\x0a\x10", self.last_bytes, b"\x12\x08", unhexlify(span.span_id)]
        if span.state:
            pieces.append(field(0x1A, span.state.encode("ascii")))
        if span.parent_id:
            pieces.append(b"\x22\x08")
            pieces.append(unhexlify(span.parent_id))
        name = utf8(span.name)
        pieces.append(b"\x2a")
        pieces.append(varint(len(name)))
        pieces.append(name)
        # kind (6), start (7, fixed64) and end (8, fixed64) times.
        pieces.append(_TIMES.pack(0x30, span.kind, 0x39, span.start_ns, 0x41, span.end_ns))
        keys, values = span.keys, span.values
        for n in range(len(keys)):
            value = values[n]
            if isinstance(value, str):
                self.add_string(pieces, keys[n], utf8(value))
            else:
                self.add_int(pieces, keys[n], value)
        error = span.error
        if isinstance(error, tuple):
            pieces.append(field(0x5A, self.exception_event(error, span.end_ns)))
            pieces.append(STATUS_ERROR)
        else:
            pieces.append(STATUS_ERROR if error else STATUS_UNSET)
        pieces.append(FLAGS_TAG)
        pieces.append(REMOTE_FLAGS if span.remote_parent else LOCAL_FLAGS)
        return b"".join(pieces)

    def add_string(self, pieces: list[bytes], name: str, data: bytes) -> None:
        """An attribute with a string value: its head (the tag and lengths, which depend on the
        value's length alone, and the key), made once per key and length, then the value."""
        heads = self.string_heads.get(name)
        if heads is None:
            encoded = self.key(name)
            heads = self.string_heads[name] = [
                b"\x4a" + SMALL[len(encoded) + 4 + n] + encoded + b"\x12" + SMALL[n + 2]
                + b"\x0a" + SMALL[n]
                for n in range(max(0, 0x80 - 4 - len(encoded)))
            ]  # fmt: skip
        size = len(data)
        if size < len(heads):
            pieces.append(heads[size])
        else:
            pieces.append(field(0x4A, attribute(self.key(name), data.decode())))
            return
        pieces.append(data)

    def add_int(self, pieces: list[bytes], name: str, value: int) -> None:
        """An attribute with an int value: all of it made once per key and value (a status, a
        port, an attempt: a few values; a value past 65535 is encoded each time)."""
        values = self.ints.get(name)
        if values is None:
            values = self.ints[name] = {}
        encoded = values.get(value)
        if encoded is None:
            encoded = field(0x4A, attribute(self.key(name), value))
            if 0 <= value <= 0xFFFF and len(values) < MAX_CACHED_INTS:
                values[value] = encoded
        pieces.append(encoded)

    def key(self, name: str) -> bytes:
        encoded = self.keys.get(name)
        if encoded is None:
            encoded = self.keys[name] = key(name)
        return encoded

    def exception_event(self, error: tuple[str, str, str], time_ns: int) -> bytes:
        """The ``exception`` event the SDK's ``record_exception`` adds, with its attributes."""
        attributes = (
            ("exception.type", error[0]),
            ("exception.message", error[1]),
            ("exception.stacktrace", error[2]),
            ("exception.escaped", "False"),
        )
        pieces = [b"\x09", _FIXED64.pack(time_ns), field(0x12, b"exception")]
        for name_, value in attributes:
            pieces.append(field(0x1A, attribute(self.key(name_), value)))
        return b"".join(pieces)
