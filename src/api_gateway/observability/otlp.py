"""OTLP protobuf, written by hand: the few messages a batch of spans needs (pure: bytes out).

An ``ExportTraceServiceRequest`` of one ``ResourceSpans`` (the gateway's resource) holding one
``ScopeSpans`` (scope ``api_gateway``) with the batch's spans, as the OpenTelemetry SDK's
exporter sends them: each span's ids, ``trace_state``, parent, name, kind, times, attributes,
an ``exception`` event for a span that ended in one, its status (unset or error) and its
``flags`` (whether the parent is remote). Field numbers are those of opentelemetry-proto's
``trace/v1/trace.proto``, ``common/v1/common.proto`` and ``resource/v1/resource.proto``; the
tests decode these bytes with the generated classes of opentelemetry-proto.

Written by hand because the generated classes cost several times more per span (building a
message object per span, attribute and value before serializing) than joining these pieces.
"""

from __future__ import annotations

import struct
import traceback
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
KINDS: Final[dict[int, bytes]] = {kind: bytes((0x30, kind)) for kind in range(6)}  # field 6
INT64: Final = (1 << 64) - 1
_FIXED64: Final = struct.Struct("<Q")
# Every one-byte varint, so that the lengths and values under 128 cost no allocation.
SMALL: Final[tuple[bytes, ...]] = tuple(bytes((n,)) for n in range(128))


def varint(value: int) -> bytes:
    if value < 0x80:
        return SMALL[value]
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


def add_attribute(pieces: list[bytes], tag: bytes, encoded_key: bytes, value: str | int) -> None:
    """A ``KeyValue`` field with a string or int value, appended piece by piece: the lengths
    are summed rather than each level's bytes joined."""
    if isinstance(value, str):
        data = value.encode("utf-8", "replace")
        inner = varint(len(data))
        kind = b"\x0a"
    else:
        data = b""
        inner = varint(value & INT64)
        kind = b"\x18"
    value_length = 1 + len(inner) + len(data)
    value_prefix = varint(value_length)
    pieces.append(tag)
    pieces.append(varint(len(encoded_key) + 1 + len(value_prefix) + value_length))
    pieces.append(encoded_key)
    pieces.append(b"\x12")
    pieces.append(value_prefix)
    pieces.append(kind)
    pieces.append(inner)
    if data:
        pieces.append(data)


class Encoder:
    """Encodes batches for one resource; what never changes is encoded once, at start-up."""

    def __init__(self, resource: Sequence[tuple[str, str]]) -> None:
        attributes = b"".join([field(0x0A, attribute(key(k), v)) for k, v in resource])
        self.resource = field(0x0A, attributes)  # ResourceSpans.resource (1)
        self.scope = field(0x0A, field(0x0A, SCOPE_NAME.encode()))  # ScopeSpans.scope (1)
        self.keys: dict[str, bytes] = {}

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
        pieces = [
            b"\x0a\x10",
            bytes.fromhex(span.trace_id),
            b"\x12\x08",
            bytes.fromhex(span.span_id),
        ]
        if span.state:
            pieces.append(field(0x1A, span.state.encode("ascii")))
        if span.parent_id:
            pieces.append(b"\x22\x08")
            pieces.append(bytes.fromhex(span.parent_id))
        name = span.name.encode("utf-8", "replace")
        pieces.append(b"\x2a")
        pieces.append(varint(len(name)))
        pieces.append(name)
        pieces.append(KINDS[span.kind])
        pieces.append(b"\x39")
        pieces.append(_FIXED64.pack(span.start_ns))
        pieces.append(b"\x41")
        pieces.append(_FIXED64.pack(span.end_ns))
        keys = self.keys
        for name_, value in zip(span.keys, span.values, strict=True):
            encoded_key = keys.get(name_)
            if encoded_key is None:
                encoded_key = keys[name_] = key(name_)
            add_attribute(pieces, b"\x4a", encoded_key, value)
        error = span.error
        if isinstance(error, BaseException):
            pieces.append(field(0x5A, self.exception_event(error, span.end_ns)))
            pieces.append(STATUS_ERROR)
        else:
            pieces.append(STATUS_ERROR if error else STATUS_UNSET)
        pieces.append(FLAGS_TAG)
        pieces.append(REMOTE_FLAGS if span.remote_parent else LOCAL_FLAGS)
        return b"".join(pieces)

    def key(self, name: str) -> bytes:
        encoded = self.keys.get(name)
        if encoded is None:
            encoded = self.keys[name] = key(name)
        return encoded

    def exception_event(self, error: BaseException, time_ns: int) -> bytes:
        """The ``exception`` event the SDK's ``record_exception`` adds, with its attributes."""
        kind = type(error)
        module, name = kind.__module__, kind.__qualname__
        attributes = (
            ("exception.type", f"{module}.{name}" if module and module != "builtins" else name),
            ("exception.message", str(error)),
            ("exception.stacktrace", "".join(traceback.format_exception(error))),
            ("exception.escaped", "False"),
        )
        pieces = [b"\x09", _FIXED64.pack(time_ns), field(0x12, b"exception")]
        for name_, value in attributes:
            pieces.append(field(0x1A, attribute(self.key(name_), value)))
        return b"".join(pieces)
