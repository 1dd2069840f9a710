"""The rate-limit script's encoded arguments (stores/redis.py's ScriptArgs): exactly the tail of
the EVALSHA command that encode_command would build, for every key, and for the rate asked."""

from __future__ import annotations

import pytest

from api_gateway.limiter import Rate
from api_gateway.resp.protocol import encode_command
from api_gateway.stores.redis import GCRA, RATES_KEPT, ScriptArgs, rate_limit_tag

EVALSHA_HEAD = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n" + GCRA.sha.encode() + b"\r\n"


def evalsha(key: str, rate: Rate) -> bytes:
    tag = rate_limit_tag(key)
    keys = (b"gw:rl:{%s}" % tag, b"gw:rl:block:{%s}" % tag)
    return encode_command("EVALSHA", GCRA.sha, 2, *keys, rate.max, rate.window_ms, rate.block_ms)


@pytest.mark.parametrize(
    "key",
    ["ip:10.0.0.1", "user:user-42", "user:é☃", "a}b%c{d", "", "x" * 300, "user:\udcff"],
)
def test_a_keys_arguments_are_the_commands_tail(key: str) -> None:
    rate = Rate(100, 60_000, 30_000)

    args = ScriptArgs().of(key, rate)

    assert EVALSHA_HEAD + args == evalsha(key, rate)


def test_a_key_under_another_rate_gets_that_rates_arguments() -> None:
    script_args = ScriptArgs()
    first, second = Rate(5, 1_000, 0), Rate(7, 60_000, 0)

    for rate in (first, second, first, Rate(5, 1_000, 0)):  # the last: reloaded, equal
        assert EVALSHA_HEAD + script_args.of("user:u1", rate) == evalsha("user:u1", rate)


def test_rates_of_many_reloads_are_not_all_kept() -> None:
    script_args = ScriptArgs()
    rates = [Rate(n, 60_000, 0) for n in range(1, 3 * RATES_KEPT)]

    for rate in rates:
        assert EVALSHA_HEAD + script_args.of("ip:10.0.0.1", rate) == evalsha("ip:10.0.0.1", rate)

    assert len(script_args._rates) <= RATES_KEPT
