"""Trace context and sampling, and the finished span as the exporter takes it (pure: no I/O).

The rules are OpenTelemetry's, so that the gateway's decisions and ids agree with the other
services' SDKs:

- W3C ``traceparent`` is parsed as the SDK's ``TraceContextTextMapPropagator`` does (the same
  pattern; all-zero ids, a version ``ff`` or a version ``00`` with more fields are invalid: a
  new trace). ``tracestate`` lines are one list; a member that is not ``key=value`` in W3C's
  grammar, a repeated key or more than 32 members drop the whole list, as the SDK's
  ``TraceState.from_header`` does.
- Sampling is ``ParentBased(TraceIdRatioBased(ratio))``: a valid parent's sampled flag decides;
  a new trace is kept when the low 64 bits of its id are below ``round(ratio * 2**64)``.
- A trace the gateway starts has random ids and says so (flag bit 1, W3C level 2), as the
  SDK's; a continued trace keeps its parent's bit.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from typing import Final

from api_gateway.types import Headers

TRACEPARENT: Final = b"traceparent"
TRACESTATE: Final = b"tracestate"
SAMPLED: Final = 1
RANDOM_TRACE_ID: Final = 2
LOW_64: Final = (1 << 64) - 1
MAX_TRACEPARENT: Final = 512
MAX_TRACESTATE: Final = 8192
MAX_STATE_MEMBERS: Final = 32
IDS_PER_DRAW: Final = 64  # new traces drawn from the generator at once (Sampler.draw)
# A new trace's random bytes: its id (16), its server span's (8) and 8 unused, so that in the
# drawn hex digits, a "-" every 16 bytes, "trace id-span id" is one slice (Sampler.draw).
BYTES_PER_TRACE: Final = 32
HEX_PER_TRACE: Final = 2 * BYTES_PER_TRACE + 2  # its bytes' hex digits and two "-"
UNSAMPLED_START: Final = b"traceparent: 00-"
UNSAMPLED_END: Final = b"-02\r\n"
# OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
FLAGS: Final[tuple[str, ...]] = ("-00", "-01", "-02", "-03")
NO_LINE: Final = (b"", b"")
SERVER: Final = 2
CLIENT: Final = 3
PARENT_FORMAT: Final = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_KEY: Final = (
    r"[a-z][_0-9a-z\-\*\/]{0,255}|[a-z0-9][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13}"
)
_VALUE: Final = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
MEMBER: Final = re.compile(f"({_KEY})=({_VALUE})")


class TraceContext:
    """The request's place in its trace, as its upstream attempts see it: the trace; the
    server span's id (a sampled attempt's parent; when not sampled, the parent id every attempt
    passes on, as no span is recorded to give each its own); the client's span ("" for a new
    trace); the W3C flags and ``tracestate`` passed on; whether the client sent trace fields
    (then they are replaced, else ours are added); and, when not sampled, the ``traceparent``
    line every attempt sends, made once."""

    __slots__ = (
        "carried",
        "flags",
        "line",
        "parent_id",
        "sampled",
        "span_id",
        "state",
        "trace_id",
    )

    def __init__(
        self, trace_id: str, span_id: str, parent_id: str, flags: int, state: str, carried: bool
    ) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.flags, self.state, self.carried = flags, state, carried
        self.sampled = sampled = flags & SAMPLED != 0
        self.line = NO_LINE if sampled else (TRACEPARENT, traceparent(trace_id, span_id, flags))


class Span:
    """A finished span, as recorded on the request path and encoded later, in a batch, by
    ``otlp.encode``: the values only; ``keys`` names the attributes (a shared tuple)."""

    __slots__ = (
        "end_ns",
        "error",
        "keys",
        "kind",
        "name",
        "parent_id",
        "remote_parent",
        "span_id",
        "start_ns",
        "state",
        "trace_id",
        "values",
    )

    def __init__(
        self,
        kind: int,
        context: TraceContext,
        span_id: str,
        parent_id: str,
        remote_parent: bool,
        name: str,
        start_ns: int,
        end_ns: int,
        keys: tuple[str, ...],
        values: tuple[str | int, ...],
        error: bool | tuple[str, str, str],
    ) -> None:
        self.kind, self.trace_id, self.span_id = kind, context.trace_id, span_id
        self.parent_id, self.remote_parent, self.state = parent_id, remote_parent, context.state
        self.name, self.start_ns, self.end_ns = name, start_ns, end_ns
        self.keys, self.values = keys, values
        # False: status unset; True: status error; an exception (``exception_record``): that
        # too, and its event.
        self.error = error


def exception_record(error: BaseException) -> tuple[str, str, str]:
    """The type, message and stack trace of the exception a span ended in, as the SDK's
    ``record_exception`` records them; formatted at once, so that the queue holds no frames
    (and the requests they refer to) while the span waits for its batch."""
    kind = type(error)
    module, name = kind.__module__, kind.__qualname__
    qualified = f"{module}.{name}" if module and module != "builtins" else name
    return qualified, str(error), "".join(traceback.format_exception(error))


def trace_headers(headers: Headers) -> tuple[str, str] | None:
    """The client's one ``traceparent`` ("" when it sent none, or two lines of it: invalid, a
    new trace, and the client's ``tracestate`` goes with its trace) and its ``tracestate``
    lines joined ("" if none); None when it sent neither field."""
    parent: bytes | None = None
    state: bytes | None = None
    doubled = False
    for name, value in headers:
        if name == TRACEPARENT:
            doubled = parent is not None
            parent = value
        elif name == TRACESTATE:
            state = value if state is None else state + b"," + value
    if parent is None:
        return None if state is None else ("", "")
    if doubled:
        return "", ""
    return parent.decode("latin-1"), "" if state is None else state.decode("latin-1")


def valid_state(state: str) -> str:
    """``tracestate`` as the SDK keeps it: its members re-joined, or "" when any is invalid."""
    if len(state) > MAX_TRACESTATE:
        return ""
    members: list[str] = []
    keys: set[str] = set()
    for part in state.split(","):
        member = part.strip(" \t")
        if not member:
            continue
        match = MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys:
            return ""
        keys.add(match.group(1))
        members.append(member)
    return ",".join(members) if len(members) <= MAX_STATE_MEMBERS else ""


def parent_ids(traceparent: str) -> tuple[str, str, int] | None:
    """The client's trace id, span id and flags, or None when ``traceparent`` is invalid."""
    if len(traceparent) > MAX_TRACEPARENT:
        return None
    match = PARENT_FORMAT.search(traceparent)
    if match is None:
        return None
    version, trace_id, span_id = match.group(1), match.group(2), match.group(3)
    if trace_id == "0" * 32 or span_id == "0" * 16 or version == "ff":
        return None
    if version == "00" and match.group(5):
        return None
    return trace_id, span_id, int(match.group(4), 16)


class Sampler:
    """Decides each request's trace: continued from the client's or new, sampled or not."""

    def __init__(
        self,
        ratio: float,
        random_bits: Callable[[int], int],
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        """``random_bytes``: the new traces' (the gateway's: ``os.urandom``, a call per draw
        and no conversion); by default, the bits of ``random_bits`` (tests inject those)."""
        self.bound = bound = round(ratio * (LOW_64 + 1))  # TraceIdRatioBased's
        self.bound_top = bound >> 56  # its first byte (256 when every trace is kept)
        self.random_bits = random_bits  # span ids of sampled requests
        self.random_bytes = random_bytes or bytes_from(random_bits)  # new traces, drawn ahead
        # New traces drawn ahead, IDS_PER_DRAW at a time (``draw``): BYTES_PER_TRACE random
        # bytes each, also as hex digits in text (the access log's trace id) and in wire form
        # (the ``traceparent`` of a trace not sampled); ``taken`` of them used.
        self.raw = b""
        self.drawn = ""
        self.drawn_wire = b""
        self.taken = IDS_PER_DRAW

    def context(self, headers: Headers) -> TraceContext:
        found = trace_headers(headers)
        if found is not None:
            parent = parent_ids(found[0])
            if parent is not None:
                trace_id, parent_id, parent_flags = parent
                # The SDK keeps the parent's sampled and random-id bits, no other.
                flags = parent_flags & (SAMPLED | RANDOM_TRACE_ID)
                state = valid_state(found[1])
                return TraceContext(trace_id, self.span_id(), parent_id, flags, state, True)
        return self.started(self.new_trace(), found is not None)

    def new_trace(self) -> int:
        """The next new trace: its place among the drawn ones (``sampled``, ``trace_id``,
        ``ids``, ``started``)."""
        at = self.taken
        if at >= IDS_PER_DRAW:
            self.draw()
            at = 0
        self.taken = at + 1
        return at

    def draw(self) -> None:
        """IDS_PER_DRAW new traces, each a trace id and its server span's (an all-zero id,
        invalid, has a chance of 2**-128, or 2**-64 for the span's: not worth a test), in one
        call and two conversions for all. Per trace, a call to the generator and its conversions
        had cost about 2,000 instructions and formatting its line 800 or more; what is left per
        request is a few slices.

        The hex digits have a "-" after every 16 bytes: a trace's 32 bytes read
        "<trace id>-<span id><16 unused digits>", so the middle of its ``traceparent`` is one
        slice (``ids``). The separators and the unused bytes cost about 180 instructions a
        request in ``hex``; the slices and pieces of the head they save, about 900 (callgrind,
        with sockets)."""
        self.raw = raw = self.random_bytes(BYTES_PER_TRACE * IDS_PER_DRAW)
        self.drawn = drawn = raw.hex("-", 16)
        self.drawn_wire = drawn.encode("ascii")

    def sampled(self, at: int) -> bool:
        """Whether new trace ``at`` is sampled: its id's low 64 bits below the bound. Their
        first byte decides unless it is the bound's (at 1 %, 1 trace in 256)."""
        raw, start = self.raw, at * BYTES_PER_TRACE + 8
        top, bound_top = raw[start], self.bound_top
        if top != bound_top:
            return top < bound_top
        return int.from_bytes(raw[start : start + 8], "big") < self.bound

    def trace_id(self, at: int) -> str:
        start = at * HEX_PER_TRACE
        return self.drawn[start : start + 32]

    def ids(self, at: int) -> bytes:
        """New trace ``at``'s trace id and span id as its ``traceparent`` has them, "-"
        between, in wire form: the header's line is ``UNSAMPLED_START``, this, ``UNSAMPLED_END``
        (``render_head`` adds those three pieces)."""
        start = at * HEX_PER_TRACE
        return self.drawn_wire[start : start + 49]

    def started(self, at: int, carried: bool) -> TraceContext:
        drawn, start = self.drawn, at * HEX_PER_TRACE
        flags = RANDOM_TRACE_ID | SAMPLED if self.sampled(at) else RANDOM_TRACE_ID
        trace_id, span_id = drawn[start : start + 32], drawn[start + 33 : start + 49]
        return TraceContext(trace_id, span_id, "", flags, "", carried)

    def span_id(self) -> str:
        return (self.random_bits(64) or 1).to_bytes(8, "big").hex()


def bytes_from(random_bits: Callable[[int], int]) -> Callable[[int], bytes]:
    """Random bytes of random bits, in order from the first bits."""

    def random_bytes(count: int) -> bytes:
        return random_bits(8 * count).to_bytes(count, "big")

    return random_bytes


def traceparent(trace_id: str, span_id: str, flags: int) -> bytes:
    """The W3C ``traceparent`` of a span (``flags``: 0 to 3, the only ones the gateway sets)."""
    return f"00-{trace_id}-{span_id}{FLAGS[flags]}".encode("ascii")
