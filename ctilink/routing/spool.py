"""An append-only, fsync'd JSON Lines spool: rows that could not reach the database.

Theory of operation
-------------------
``append(rows)`` writes one JSON object per line to ``<name>.spool.jsonl`` in the spool
directory, then flushes and fsyncs the file (and the directory when it created the file):
when it returns, the rows survive a crash of the daemon or of the machine. Those calls
block, so the owner runs them in a worker thread (``asyncio.to_thread``).

Draining never loses a row either: ``take()`` renames the spool to
``<name>.replay.jsonl`` (an atomic rename; new rows go to a fresh spool meanwhile) and the
owner reads it in chunks (``read_chunk``), writes each chunk to the database idempotently
(the interactions are keyed by call id), and only then ``done()`` deletes it. A crash at
any point leaves the replay file, which the next ``take()`` returns first. A torn last line
(a crash in the middle of an ``append`` that never returned) is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.path = directory / f"{name}.spool.jsonl"
        self.replay_path = directory / f"{name}.replay.jsonl"

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` durably (blocking: call it from a worker thread)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        text = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        with open(self.path, "a", encoding="utf-8") as spool:
            spool.write(text)
            spool.flush()
            os.fsync(spool.fileno())
        if created:
            _fsync_directory(self.directory)

    def take(self) -> Path | None:
        """The file to replay next (renaming the spool to it), or None if nothing waits."""
        if self.replay_path.exists():
            return self.replay_path
        if self.path.exists() and self.path.stat().st_size > 0:
            os.replace(self.path, self.replay_path)
            _fsync_directory(self.directory)
            return self.replay_path
        return None

    @staticmethod
    def read_chunk(path: Path, offset: int, count: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``count`` rows of ``path`` from byte ``offset``, and the offset after them
        (the file's size at the end)."""
        rows: list[dict[str, Any]] = []
        with open(path, "rb") as spool:
            spool.seek(offset)
            while len(rows) < count:
                line = spool.readline()
                if not line:
                    break
                start, offset = offset, offset + len(line)
                try:
                    row = json.loads(line)
                except ValueError:
                    log.warning("spool %s: skipping a torn line at byte %d", path, start)
                    continue
                if isinstance(row, dict):
                    rows.append(row)
        return rows, offset

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)
