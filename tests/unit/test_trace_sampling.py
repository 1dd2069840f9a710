"""The sampler and W3C trace context: OpenTelemetry's rules (ParentBased(TraceIdRatioBased)),
with injected random bits so every decision is known."""

from __future__ import annotations

import pytest

from api_gateway.observability.spans import (
    BYTES_PER_TRACE,
    IDS_PER_DRAW,
    UNSAMPLED_END,
    UNSAMPLED_START,
    Sampler,
    parent_ids,
    trace_headers,
    traceparent,
    valid_state,
)
from api_gateway.types import Headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
# TraceIdRatioBased(0.01).bound and (0.5).bound, as opentelemetry-sdk 1.45 computes them.
BOUND_1_PERCENT = 184467440737095520
BOUND_HALF = 1 << 63


class Bits:
    """Random bits handed out in order: a draw of new traces' ids, or a span id (64 bits)."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.asked: list[int] = []

    def __call__(self, count: int) -> int:
        self.asked.append(count)
        return self.values.pop(0)


def new_ids(trace_id: int, span_id: int, *more: tuple[int, int]) -> int:
    """A draw of ``IDS_PER_DRAW`` new traces' ids, of which the first are ``trace_id`` and
    ``span_id`` (``BYTES_PER_TRACE`` bytes each: the trace's id, its server span's, 8 unused,
    here all ones so that a slice that strays into them shows), then ``more``."""
    draw, per_trace = 0, 8 * BYTES_PER_TRACE
    for index, (trace, span) in enumerate(((trace_id, span_id), *more)):
        ids = trace << 128 | span << 64 | (1 << 64) - 1
        draw |= ids << (per_trace * (IDS_PER_DRAW - 1 - index))
    return draw


def headers(*lines: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in lines]


def test_a_new_trace_is_kept_below_the_ratio_bound_of_its_low_64_bits() -> None:
    trace_id = 0xABCDEF << 64 | (BOUND_1_PERCENT - 1)  # the high half never matters
    bits = Bits(new_ids(trace_id, 0x1234))
    context = Sampler(0.01, bits).context([])
    assert (context.sampled, context.flags, context.parent_id) == (True, 0x03, "")
    assert (context.trace_id, context.span_id) == (f"{trace_id:032x}", "0000000000001234")
    assert not context.carried
    assert bits.asked == [8 * BYTES_PER_TRACE * IDS_PER_DRAW]

    dropped = Sampler(0.01, Bits(new_ids(BOUND_1_PERCENT, 0x1234))).context([])
    assert (dropped.sampled, dropped.flags) == (False, 0x02)
    line = f"00-{BOUND_1_PERCENT:032x}-0000000000001234-02".encode()
    assert dropped.line == (b"traceparent", line)  # made once, for every attempt


def test_without_trace_fields_there_is_nothing_to_replace() -> None:
    assert trace_headers(headers(("accept", "*/*"))) is None
    assert trace_headers(headers(("tracestate", "a=1"))) == ("", "")
    state_only = Sampler(1.0, Bits(new_ids(3, 4))).context(headers(("tracestate", "a=1")))
    assert state_only.carried and state_only.state == "" and state_only.parent_id == ""


def test_the_ratio_bound_is_the_sdks() -> None:
    assert Sampler(0.01, Bits()).bound == BOUND_1_PERCENT
    assert Sampler(0.5, Bits()).bound == BOUND_HALF
    assert Sampler(0.0, Bits()).bound == 0
    assert Sampler(1.0, Bits()).bound == 1 << 64


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.25, 0.5, 1 / 3, 0.999, 1.0])
def test_the_first_byte_test_agrees_with_the_numbers(ratio: float) -> None:
    bound = Sampler(ratio, Bits()).bound
    # Around the bound, and its first byte's edges, where the test goes on to all 8 bytes.
    top = bound >> 56 << 56
    candidates = {0, 1, bound - 1, bound, bound + 1, (1 << 64) - 1, 1 << 63, top, top - 1}
    candidates |= {top + (1 << 56) - 1, top + (1 << 56)}
    for low in (n for n in candidates if 0 <= n < 1 << 64):
        sampler = Sampler(ratio, Bits(new_ids(0xFFFF << 64 | low, 1)))
        assert sampler.context([]).sampled == (low < bound), (ratio, low)


def test_new_ids_are_drawn_ahead_in_order_and_drawn_again_when_used_up() -> None:
    first = [(0x1000 + n, 0x2000 + n) for n in range(IDS_PER_DRAW)]
    bits = Bits(new_ids(*first[0], *first[1:]), new_ids(0xAA, 0xBB))
    sampler = Sampler(1.0, bits)
    contexts = [sampler.context([]) for _ in range(IDS_PER_DRAW + 1)]
    got = [(int(c.trace_id, 16), int(c.span_id, 16)) for c in contexts]
    assert got == [*first, (0xAA, 0xBB)]
    assert bits.asked == [8 * BYTES_PER_TRACE * IDS_PER_DRAW] * 2  # one call a draw


def test_each_new_trace_of_a_draw_has_its_decision_and_its_line() -> None:
    # Half the traces below the 50 % bound, half above, alternating.
    drawn = [
        ((n << 64) | (BOUND_HALF + n if n % 2 else n), 0x3000 + n) for n in range(IDS_PER_DRAW)
    ]
    sampler = Sampler(0.5, Bits(new_ids(*drawn[0], *drawn[1:])))
    for n, (trace, span) in enumerate(drawn):
        at = sampler.new_trace()
        assert at == n
        assert sampler.sampled(at) == (n % 2 == 0)
        assert sampler.trace_id(at) == f"{trace:032x}"
        # The header line an upstream head carries: the W3C field, flags 02 (random id, not
        # sampled), and nothing of the neighbours' ids.
        line = UNSAMPLED_START + sampler.ids(at) + UNSAMPLED_END  # render_head's pieces
        assert line == f"traceparent: 00-{trace:032x}-{span:016x}-02\r\n".encode()
        assert line == b"traceparent: " + traceparent(f"{trace:032x}", f"{span:016x}", 2) + b"\r\n"


def test_an_unsampled_request_asks_for_one_random_number() -> None:
    bits = Bits(new_ids(BOUND_HALF + 5, 9))
    context = Sampler(0.5, bits).context(headers(("accept", "*/*")))
    assert not context.sampled and bits.asked == [8 * BYTES_PER_TRACE * IDS_PER_DRAW]


def test_the_parents_sampled_flag_decides_whatever_the_ratio() -> None:
    sampled = Sampler(0.0, Bits(0x99)).context(headers(("traceparent", f"00-{TRACE}-{PARENT}-01")))
    assert (sampled.trace_id, sampled.sampled, sampled.flags) == (TRACE, True, 1)
    assert (sampled.span_id, sampled.parent_id) == ("0000000000000099", PARENT)

    unsampled = Sampler(1.0, Bits(0x98)).context(
        headers(("traceparent", f"00-{TRACE}-{PARENT}-00"))
    )
    assert (unsampled.trace_id, unsampled.sampled, unsampled.parent_id) == (TRACE, False, PARENT)
    assert unsampled.line == (b"traceparent", f"00-{TRACE}-0000000000000098-00".encode())


def test_a_parent_keeps_its_random_bit_and_no_other_flag() -> None:
    ff = Sampler(1.0, Bits(7)).context(headers(("traceparent", f"00-{TRACE}-{PARENT}-ff")))
    assert ff.flags == 0x03
    fc = Sampler(1.0, Bits(7)).context(headers(("traceparent", f"00-{TRACE}-{PARENT}-fc")))
    assert fc.flags == 0x00


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE.upper()}-{PARENT}-01",  # upper-case hex
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{PARENT}-01",  # the forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has four fields
        f"00-{TRACE}-{PARENT}",
        f"00-{TRACE[:-1]}-{PARENT}-01",
        "garbage",
        f"01-{TRACE}-{PARENT}-01-" + "x" * 500,  # longer than 512
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    assert parent_ids(value) is None
    state = ("tracestate", "vendor=1")
    context = Sampler(1.0, Bits(new_ids(0x55, 0x66))).context(
        headers(("traceparent", value), state)
    )
    assert (context.trace_id, context.parent_id, context.state) == (f"{0x55:032x}", "", "")


def test_a_later_version_may_carry_more_fields_and_spaces_are_trimmed() -> None:
    assert parent_ids(f"01-{TRACE}-{PARENT}-01-more") == (TRACE, PARENT, 1)
    assert parent_ids(f" \t00-{TRACE}-{PARENT}-01 ") == (TRACE, PARENT, 1)


def test_two_traceparent_lines_are_no_parent_and_drop_the_tracestate() -> None:
    line = ("traceparent", f"00-{TRACE}-{PARENT}-01")
    assert trace_headers(headers(line, ("tracestate", "a=1"), line)) == ("", "")
    context = Sampler(0.0, Bits(new_ids(0x77, 1))).context(headers(line, line))
    assert context.carried  # the client's lines are replaced, not added to
    assert (context.trace_id, context.parent_id, context.state, context.sampled) == (
        f"{0x77:032x}",
        "",
        "",
        False,
    )


def test_tracestate_lines_are_one_list_and_an_invalid_one_drops_it_all() -> None:
    found = trace_headers(
        headers(
            ("tracestate", "first=1,second=2"),
            ("traceparent", f"00-{TRACE}-{PARENT}-01"),
            ("tracestate", "third=3"),
        )
    )
    assert found == (f"00-{TRACE}-{PARENT}-01", "first=1,second=2,third=3")
    assert valid_state(" a=1 ,, b@vendor=x y ") == "a=1,b@vendor=x y"
    assert valid_state("a=1,Bad=2") == ""  # upper-case key
    assert valid_state("a=1,a=2") == ""  # a key twice
    assert valid_state("a=1,b=,c") == ""
    assert valid_state(",".join(f"k{n}=v" for n in range(33))) == ""
    assert valid_state(",".join(f"k{n}=v" for n in range(32))).count(",") == 31


def test_traceparent_of_an_attempt() -> None:
    assert traceparent(TRACE, PARENT, 3) == f"00-{TRACE}-{PARENT}-03".encode()
    assert traceparent(TRACE, PARENT, 0) == f"00-{TRACE}-{PARENT}-00".encode()
