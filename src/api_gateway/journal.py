"""Operator commands every worker applies: a journal in the workers' shared directory.

The admin API's commands that change a worker's state (log level, ejecting or restoring an
instance, resetting a breaker) must reach every worker, whichever one answered. The answering
worker appends one JSON line per command to ``<dir>/commands.jsonl`` (``O_APPEND``: one
``write`` per line, so lines from several workers never interleave); every worker looks at the
file's size every ``POLL_S`` (a ``stat``, nothing more when nothing changed) and applies the new
lines in order. A worker that starts (a restart, a reload) reads the journal from the top, so
operator overrides outlive the workers that received them. How far a worker has applied (its
offset) is published in its state document: the answering worker waits for every live worker's
offset to pass its command's before it answers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

log = logging.getLogger("api_gateway.admin")

FILE_NAME: Final = "commands.jsonl"
POLL_S: Final = 0.2
# The commands a worker knows, and the arguments each carries.
COMMANDS: Final = {
    "log-level": ("level",),
    "eject": ("service", "instance"),
    "restore": ("service", "instance"),
    "breaker-reset": ("service",),
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arguments: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str:
        return dict(self.arguments)[key]

    def line(self) -> bytes:
        return orjson.dumps({"command": self.name, **dict(self.arguments)}) + b"\n"


def command(name: str, **arguments: str) -> Command:
    return Command(name, tuple(sorted(arguments.items())))


def parse_line(line: bytes) -> Command | None:
    """One journal line; None for anything that is not a known, complete command."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    name = document.get("command")
    if not isinstance(name, str) or name not in COMMANDS:
        return None
    arguments = {}
    for key in COMMANDS[name]:
        value = document.get(key)
        if not isinstance(value, str) or not value:
            return None
        arguments[key] = value
    return command(name, **arguments)


def parse(data: bytes) -> tuple[list[Command], int]:
    """The complete lines of ``data`` as commands (malformed ones skipped), and how many bytes
    they took: a line still being written (no newline yet) waits for the next read."""
    end = data.rfind(b"\n") + 1
    commands = [c for line in data[:end].splitlines() if (c := parse_line(line)) is not None]
    return commands, end


class Journal:
    """This worker's reader and writer of the shared journal (no directory: local only)."""

    def __init__(self, directory: str | None, apply: Callable[[Command], None]) -> None:
        self.path = Path(directory) / FILE_NAME if directory else None
        self.apply = apply
        self.offset = 0  # bytes of the journal this worker has applied

    def append(self, entry: Command) -> int:
        """Write ``entry`` and apply everything up to it here; return the offset every worker
        must reach to have applied it. Without a directory, apply it alone."""
        if self.path is None:
            self.apply(entry)
            return 0
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, entry.line())
            end = os.fstat(descriptor).st_size
        finally:
            os.close(descriptor)
        self.catch_up(end)
        return end

    def poll(self) -> bool:
        """Apply what was appended since the last look; whether anything was."""
        if self.path is None:
            return False
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size <= self.offset:
            return False
        return self.catch_up(size)

    def catch_up(self, size: int) -> bool:
        assert self.path is not None
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
        except OSError as exc:
            log.warning("cannot read the command journal: %s", exc)
            return False
        commands, used = parse(data)
        for entry in commands:
            try:
                self.apply(entry)
            except Exception:  # one bad command must not stop the others, nor the worker
                log.exception("cannot apply an operator command", extra={"command": entry.name})
        self.offset += used
        return used > 0
