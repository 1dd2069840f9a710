"""The verified-token cache against a real gateway: padding does not mint entries, long tokens are
refused before any work, and the cache stays within its bytes however large the tokens are.

Memory is the gateway process's resident set, read from /proc (psutil). The tokens' service
listens nowhere: an answer other than 401 means authentication passed, and nothing upstream
keeps what the test sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil  # type: ignore[import-untyped]
import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint

MIB = 1024 * 1024
CACHE_BYTES = 4 * MIB
TARGET = "/api/v1/tickets/1"
CONNECTIONS = 4


@pytest.fixture(scope="module")
def gateway(
    service_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    urls = {**service_fleet.urls(), "ticket": closed_port_url()}
    config = {"jwt": {"cache_max_bytes": CACHE_BYTES}}
    with running_gateway(tmp_path_factory.mktemp("tokens"), urls, config=config) as gw:
        yield gw


def rss(gateway: GatewayProcess) -> int:
    process = psutil.Process(gateway.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def statuses(gateway: GatewayProcess, values: list[str]) -> list[int]:
    """Each Authorization value once, over a few keep-alive connections; statuses in order."""

    def send(share: list[str]) -> list[int]:
        seen = []
        with RawConnection(gateway.port) as connection:
            for value in share:
                connection.send(build_request("GET", TARGET, [("Authorization", value)]))
                seen.append(connection.read_response().status)
        return seen

    shares = [values[n::CONNECTIONS] for n in range(CONNECTIONS)]
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        answered = list(pool.map(send, shares))
    ordered = [0] * len(values)
    for n, share in enumerate(answered):
        ordered[n::CONNECTIONS] = share
    return ordered


def test_padded_spellings_of_one_token_add_no_entries(gateway: GatewayProcess) -> None:
    token = mint(sub="padded")
    statuses(gateway, [f"Bearer {token}"] * 50)  # warm: the token is cached, buffers grown
    before = rss(gateway)

    trailing = [f"Bearer {token}" + " " * (6000 + n) for n in range(1500)]
    inner = ["Bearer" + " " * (6000 + n) + token for n in range(1500)]
    trailing_answers = statuses(gateway, trailing)
    inner_answers = statuses(gateway, inner)
    grown = rss(gateway) - before

    assert grown < 8 * MIB, f"the gateway grew by {grown / MIB:.1f} MiB"
    # Trailing whitespace is not part of a field value: the same token, the same entry.
    assert 401 not in trailing_answers
    # Anything but one space between scheme and token is refused.
    assert set(inner_answers) == {401}


def test_an_absurdly_long_token_is_refused_before_any_work(gateway: GatewayProcess) -> None:
    token = mint(sub="long", email="x" * 9000)  # valid, signed, but over 8 KiB

    assert statuses(gateway, [f"Bearer {token}"]) == [401]


def test_many_distinct_long_tokens_stay_within_the_cache_bytes(gateway: GatewayProcess) -> None:
    tokens = [mint(sub=f"user-{n}", email="e" * 5000) for n in range(3000)]  # ~7 KiB each
    statuses(gateway, [f"Bearer {mint(sub='warm', email='e' * 5000)}"] * 50)
    before = rss(gateway)

    answers = statuses(gateway, [f"Bearer {token}" for token in tokens])
    grown = rss(gateway) - before

    assert 401 not in answers
    # 3,000 entries of ~7 KiB tokens would be ~60 MiB; the cache may hold 4 MiB of them.
    assert grown < 16 * MIB, f"the gateway grew by {grown / MIB:.1f} MiB"
