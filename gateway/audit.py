"""The write audit: every attempt to set a value on a device, refused ones too.

Kept in ``audit.db`` in the data dir, a SQLite file of its own written on a thread of its own
(the event loop never waits for its lock), bounded to ``max_rows`` (the oldest go first).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["AUDIT_FILE", "Audit", "AuditEntry"]

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    device TEXT NOT NULL,
    entry BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS writes_device ON writes (device, id);
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: int
    """ms since the epoch, when the attempt was made."""
    who: str
    """The token's name, or the MQTT topic a command came on."""
    path: str
    """rest, mqtt or page."""
    device: str
    tag: str | None
    requested: Any
    result: str
    """written, refused, failed, unknown (no answer: may have been applied) or not attempted."""
    reason: str | None = None
    raw: str | None = None
    method: str | None = None
    before: Any = None
    read_back: Any = None
    duration_ms: float | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Audit:
    def __init__(self, path: Path, max_rows: int) -> None:
        self.max_rows = max_rows
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audit")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self.failures = 0
        """Entries that could not be stored (logged each time)."""

    async def record(self, entries: list[AuditEntry]) -> None:
        for entry in entries:
            log.info(
                "write by %s via %s: %s.%s = %r: %s%s",
                entry.who,
                entry.path,
                entry.device,
                entry.tag or "*",
                entry.requested,
                entry.result,
                f" ({entry.reason})" if entry.reason else "",
            )
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, entries)
        except sqlite3.Error as exc:
            # The log line above is the record then; the write itself is not undone.
            self.failures += len(entries)
            log.error("cannot store %d audit entries in %s: %s", len(entries), AUDIT_FILE, exc)

    async def entries(
        self, limit: int, before_id: int | None = None, device: str | None = None
    ) -> list[tuple[int, AuditEntry]]:
        """Newest first: (id, entry); ``before_id`` pages back."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._select, limit, before_id, device
        )

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _insert(self, entries: list[AuditEntry]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO writes (ts, device, entry) VALUES (?, ?, ?)",
                [(e.ts, e.device, orjson.dumps(e.public(), default=str)) for e in entries],
            )
            self._db.execute(
                "DELETE FROM writes WHERE id <= (SELECT MAX(id) FROM writes) - ?",
                (self.max_rows,),
            )

    def _select(
        self, limit: int, before_id: int | None, device: str | None
    ) -> list[tuple[int, AuditEntry]]:
        below = before_id if before_id is not None else 2**63 - 1
        if device is None:
            query = "SELECT id, entry FROM writes WHERE id < ? ORDER BY id DESC LIMIT ?"
            rows = self._db.execute(query, (below, limit))
        else:
            query = (
                "SELECT id, entry FROM writes WHERE device = ? AND id < ? ORDER BY id DESC LIMIT ?"
            )
            rows = self._db.execute(query, (device, below, limit))
        return [(row_id, AuditEntry(**orjson.loads(blob))) for row_id, blob in rows]
