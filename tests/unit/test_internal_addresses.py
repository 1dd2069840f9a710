"""What a client learns of the gateway's insides: a Location built from the instance's address
becomes the path it points at, and a failed connection is told in words, never with the
address the socket error names."""

from __future__ import annotations

import errno
import socket

import pytest

from api_gateway.errors import THE_SERVICE, BadGateway, ConnectFailed, name_service
from api_gateway.http.client import connect_failure
from api_gateway.http.framing import ResponseFieldFilter
from api_gateway.http.response_head import ResponseHead

INSTANCE = "10.1.0.5:3004"


def head(drop: frozenset[bytes] = frozenset()) -> ResponseHead:
    return ResponseHead(ResponseFieldFilter(drop, ()), 65536, 100, INSTANCE)


@pytest.mark.parametrize(
    ("sent", "passed"),
    [
        (b"http://10.1.0.5:3004/api/v1/tickets/7", b"/api/v1/tickets/7"),
        (b"HTTPS://10.1.0.5:3004/api/v1/tickets/7?x=1", b"/api/v1/tickets/7?x=1"),
        (b"//10.1.0.5:3004/a", b"/a"),
        (b"http://10.1.0.5:3004", b"/"),
        (b"http://10.1.0.5:3004?page=2", b"/?page=2"),
        (b"/api/v1/tickets/7", b"/api/v1/tickets/7"),  # already relative
        (b"https://tickettoken.com/a", b"https://tickettoken.com/a"),  # another host
        (b"http://10.1.0.5:30045/a", b"http://10.1.0.5:30045/a"),  # another port
        (b"http://10.1.0.5:3004.evil.example/a", b"http://10.1.0.5:3004.evil.example/a"),
    ],
)
def test_a_location_naming_the_instance_becomes_its_path(sent: bytes, passed: bytes) -> None:
    response = head()

    assert response.add(b"Location", sent, True)
    assert response.add(b"Content-Location", sent, True)

    assert response.headers == [(b"location", passed), (b"content-location", passed)]


def test_a_location_the_configuration_drops_is_dropped() -> None:
    response = head(frozenset({b"content-location"}))

    response.add(b"Content-Location", b"http://10.1.0.5:3004/a", True)

    assert response.headers == []


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.1.0.5', 3004)"),
         "refused the connection"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset"), "reset the connection"),
        (OSError(errno.EHOSTUNREACH, "No route to host 10.1.0.5"), "could not be reached"),
        (socket.gaierror(socket.EAI_NONAME, "ticket-service.internal: unknown"),
         "could not be found (its name does not resolve)"),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed ('10.1.0.5', 3004)"),
         "could not be connected to"),
    ],
)  # fmt: skip
def test_a_failed_connection_is_told_without_its_address(error: OSError, words: str) -> None:
    assert connect_failure(error) == words


def test_the_caller_names_the_service_the_data_plane_knew_by_address() -> None:
    refused = name_service(ConnectFailed(f"{THE_SERVICE} refused the connection"), "ticket-service")
    other = name_service(BadGateway("cannot build the request"), "ticket-service")

    assert refused.detail == "ticket-service refused the connection"
    assert other.detail == "cannot build the request"
