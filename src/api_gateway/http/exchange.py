"""One exchange per request: the answering half of a client connection.

``HttpConnection`` parses and moves bytes; what happens to a request once its head is parsed is
here: queueing of pipelined requests (answered in order), dispatch to the application, sending
the response (bytes in the same write as the head) or streaming it, and finishing (the next
queued request, or the keep-alive wait, or the connection's end).

One long-lived task per connection, not a task per request: it takes the connection's requests
one after the other, and waits on a future between them. Measured with ``bench/instructions.py``
on the compiled build, the same tree but for this choice, runs alternated: a task per request
126,817 / 125,384 / 127,083 / 125,363 instructions per request (mean 126,160), a task per
connection 125,194 / 124,553 / 124,343 (mean 124,700), about 1.2 % fewer. Runs of identical
code differ by up to 1.7 k (how the ten client connections' requests batch into loop turns
varies), hence several. With ``Connection: keep-alive`` sent as well: 134,289 / 132,082 against
135,146 / 130,584, no difference beyond that noise. A new ``Task`` costs its construction, its
name, a copy of the context, its registration among the loop's tasks and the scheduling of its
first step; waking the waiting task costs one future and its result, plus renaming the task
(below). The price: an idle keep-alive connection holds its task, its coroutine and a future
(well under a kilobyte), and ``asyncio.all_tasks`` (the overload monitor's sample) walks them.

The task is named ``TASK_NAME`` (or ``RECEIVING_TASK_NAME``) while a request is in flight and
``IDLE_NAME`` while it waits, so the overload monitor still counts requests, not connections.
``connection.task`` is the task while a request is in flight and None between requests, as
before; a lost connection cancels the task, waiting or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from api_gateway.errors import GatewayError
from api_gateway.http.body import BodyStream
from api_gateway.http.flow import BACKLOG, BODY
from api_gateway.http.framing import STATUS_LINES, status_line
from api_gateway.http.server_phases import BUSY, ENDING, IDLE, READING
from api_gateway.http.wire import LAST_CHUNK, add_header_lines, chunk
from api_gateway.types import BodySource, Request, Response, Switched

if TYPE_CHECKING:
    from api_gateway.http.server import HttpConnection

log = logging.getLogger("api_gateway.http")

MAX_PIPELINED: Final = 32
TASK_NAME: Final = "http-request"
# A request whose body is still arriving: not counted as in flight by the overload monitor
# until the body is complete (clients that send slowly must not tighten everyone's limits).
RECEIVING_TASK_NAME: Final = "http-request-receiving"
INFINITY: Final = float("inf")
IDLE_NAME: Final = "http-idle"
NO_BODY_STATUSES: Final = frozenset({204, 304})
CLOSE: Final = b"connection: close\r\n"
UPGRADE_WEBSOCKET: Final = b"connection: upgrade\r\nupgrade: websocket\r\n"


def dispatch(connection: HttpConnection) -> None:
    """The requests whose heads were parsed in the last read: start one, or queue them."""
    reader = connection.reader
    fresh, reader.fresh = reader.fresh, []
    last = fresh[-1]
    if last.body is None:
        connection.body_stream = connection.stream_for(reader.body_chunks)
        last.body = connection.body_stream
        reader.body_chunks = []
    if connection.task is None and len(fresh) == 1 and not connection.queue:
        # The common case, one request and nothing in flight, skips the queue.
        if connection.phase < BUSY:
            connection.to(BUSY)
        if connection.flow.reading_paused:
            connection.resume_reading(BODY | BACKLOG)
        if connection.body_stream is not None:
            connection.body_deadline()
            name = RECEIVING_TASK_NAME
        else:
            connection.deadline = INFINITY
            name = TASK_NAME
        launch(connection, last, name)
        return
    connection.queue.extend(fresh)
    if len(connection.queue) > MAX_PIPELINED:
        connection.pause_reading(BACKLOG)
    if connection.task is None:
        start_next(connection)


def start_next(connection: HttpConnection) -> None:
    if connection.phase < BUSY:
        connection.to(BUSY)
    item = connection.queue.popleft()
    if len(connection.queue) <= MAX_PIPELINED // 2 and connection.flow.reading_paused:
        connection.resume_reading(BACKLOG)
    # While a body is still arriving, the body timeout guards it; otherwise the upstream call
    # has deadlines of its own.
    stream = connection.body_stream
    if stream is not None:
        connection.body_deadline()
    else:
        connection.deadline = INFINITY
    # A Task built with a name skips formatting "Task-<n>" for every request.
    if isinstance(item, GatewayError):
        name = TASK_NAME
    else:
        name = RECEIVING_TASK_NAME if stream is not None and item.body is stream else TASK_NAME
    launch(connection, item, name)


def launch(connection: HttpConnection, item: Request | GatewayError, name: str) -> None:
    """The connection's one task takes ``item``: started, woken, or (finishing the previous
    item, it is the caller) simply handed it."""
    connection.item = item
    runner = connection.runner
    if runner is None or runner.done():
        runner = connection.runner = asyncio.Task(run(connection), loop=connection.loop, name=name)
    else:
        runner.set_name(name)
        wake = connection.wake
        if wake is not None:
            connection.wake = None
            wake.set_result(None)
    connection.task = runner


async def run(connection: HttpConnection) -> None:
    """The connection's task: its requests in order, until the connection is done."""
    while True:
        item = connection.item
        if item is None:
            runner = connection.runner
            if runner is not None:
                runner.set_name(IDLE_NAME)  # not a request in flight for the overload monitor
            wake = connection.wake = connection.loop.create_future()
            await wake
            continue
        connection.item = None
        if isinstance(item, GatewayError):
            await send_rejection(connection, item)
        else:
            await serve(connection, item)
        transport = connection.transport
        if transport is None or transport.is_closing():
            return  # closed, or handed over to a tunnel


async def serve(connection: HttpConnection, request: Request) -> None:
    body = request.body
    try:
        response = await connection.app.handle(request)
    except Exception:
        # The app answers every error itself; reaching here is a bug, and the connection, in an
        # unknown state, is closed rather than left hanging.
        log.exception("the application failed on %s", request.method)
        last_answer(connection)
        finish(connection)
        return
    if isinstance(body, BodyStream) and not body.complete:
        body.abort()
        last_answer(connection)
    if not request.keep_alive:
        last_answer(connection)
    pump = send(connection, request.method, request.http_version, response)
    if pump is not None:
        await pump


async def send_rejection(connection: HttpConnection, error: GatewayError) -> None:
    last_answer(connection)
    pump = send(connection, "GET", "1.1", connection.app.reject(error, connection.peer_ip))
    if pump is not None:
        await pump


def last_answer(connection: HttpConnection) -> None:
    """The answer in flight is the connection's last: what is queued behind it is dropped."""
    connection.queue.clear()
    connection.end()


def finish(connection: HttpConnection) -> None:
    connection.task = None
    transport = connection.transport
    if transport is None or transport.is_closing():
        return
    if connection.queue:
        start_next(connection)
    elif connection.phase == ENDING:
        connection.close()
    elif connection.connections.draining and not connection.reader.in_head:
        # A streamed answer whose head went out before the drain began: the client was not
        # told to close, so the connection ends after the drain's idle grace.
        connection.deadline = INFINITY
        connection.idle_while_draining()
    elif connection.reader.in_head:
        # The next head began while this request was in flight: it is a head, not idle.
        connection.to(READING)
        connection.deadline = connection.loop.time() + connection.bounds.header_timeout_s
    else:
        connection.to(IDLE)
        connection.deadline = connection.loop.time() + connection.bounds.keep_alive_timeout_s


def send(
    connection: HttpConnection, method: str, version: str, response: Response
) -> Coroutine[Any, Any, None] | None:
    """Write the response; a bytes body goes out in the same write as the head.

    Returns the body pump to await for a stream, None when all is written: a plain ``def``, so
    the common answer costs no coroutine (``COMPILED.md`` §5).
    """
    transport = connection.transport
    assert transport is not None
    status = response.status
    if status == 101 and response.switched is not None:
        switch(connection, response, response.switched)
        return None
    parts = [STATUS_LINES.get(status) or status_line(status)]
    add_header_lines(parts, response.headers)
    parts.append(response.rendered)
    if response.close or (connection.connections.draining and not connection.more_requests()):
        # While draining, the last answer a connection owes says so, and the client knows to
        # take its next request elsewhere.
        last_answer(connection)
    closing = connection.phase >= ENDING and not connection.queue
    if closing:
        parts.append(CLOSE)
    elif version == "1.0":
        parts.append(b"connection: keep-alive\r\n")
    body = response.body
    bodiless = method == "HEAD" or status in NO_BODY_STATUSES or status < 200
    if not isinstance(body, bytes):
        return send_stream(connection, parts, response.length, bodiless, version, body)
    if status >= 200 and status not in NO_BODY_STATUSES:
        parts.append(b"content-length: ")  # appended one by one (COMPILED.md §7)
        parts.append(response.length or str(len(body)).encode())
        parts.append(b"\r\n\r\n")
    else:
        parts.append(b"\r\n")
    if not bodiless:
        parts.append(body)
    transport.write(b"".join(parts))
    finish(connection)
    return None


async def send_stream(
    connection: HttpConnection,
    parts: list[bytes],
    length: bytes | None,
    bodiless: bool,
    version: str,
    body: BodySource,
) -> None:
    transport = connection.transport
    assert transport is not None
    chunked = length is None and not bodiless and version == "1.1"
    if length is not None:
        parts.append(b"content-length: %s\r\n" % length)
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif not bodiless:
        # HTTP/1.0 and no length: the end of the body is the end of the connection.
        last_answer(connection)
        if parts[-1] != CLOSE:
            parts.append(CLOSE)
    parts.append(b"\r\n")
    transport.write(b"".join(parts))
    flow = connection.flow
    try:
        async for piece in body:
            if bodiless or not piece:
                continue
            transport.write(chunk(piece) if chunked else piece)
            if flow.write_paused:
                await flow.drain()
    except (GatewayError, OSError):
        # The head is gone already: all we can do is cut the response short.
        body.abort()
        cut_short(connection)
        return
    except asyncio.CancelledError:
        body.abort()
        raise
    except Exception:
        # A bug, not a network failure: this response is lost, never the worker.
        log.exception("streaming a response failed")
        body.abort()
        cut_short(connection)
        return
    if chunked:
        transport.write(LAST_CHUNK)
    finish(connection)


def switch(connection: HttpConnection, response: Response, switched: Switched) -> None:
    """A ``101``: its head goes out, then the connection becomes the client side of a tunnel to
    the upstream connection that answered it."""
    transport = connection.transport
    assert transport is not None
    parts = [STATUS_LINES[101]]
    add_header_lines(parts, response.headers)
    parts += (response.rendered, UPGRADE_WEBSOCKET, b"\r\n")
    transport.write(b"".join(parts))
    connection.task = None
    connection.queue.clear()
    connection.hand_over(
        connection.connections.websockets.open_for(switched),
        switched.transport,
        switched.buffered,
    )


def cut_short(connection: HttpConnection) -> None:
    connection.reset()
    finish(connection)
