"""A body the response cache read in part before finding it too long to keep.

Its own module because it is an async generator, which mypyc does not compile
(COMPILED.md §10): the cache policy around it is compiled, this stays interpreted. It runs only
for a body longer than the route's cache limit, never on a hit or a stored miss.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from api_gateway.types import BodySource


class Replay:
    """A body partly read already: what was read, then the rest of the stream."""

    def __init__(self, read: list[bytes], rest: AsyncIterator[bytes], source: BodySource) -> None:
        self.read, self.rest, self.source = read, rest, source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.read:
            yield chunk
        self.read = []
        async for chunk in self.rest:
            yield chunk

    def abort(self) -> None:
        self.source.abort()
