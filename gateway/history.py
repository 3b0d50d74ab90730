"""Recent history of numeric tags in the gateway's SQLite file, for the page and the API.

Written in batches off the event loop (sqlite3 blocks, so a worker thread runs the inserts),
at most one sample per tag per ``min_interval``, bounded by retention time and file size, so
the last hours are at hand without any external database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gateway.reading import Batch, Quality
from gateway.registry import open_database

__all__ = ["HISTORY_FILE", "History", "HistoryConfig", "Sample"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, tag TEXT NOT NULL, UNIQUE (device, tag));
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, ts)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
"""


HISTORY_FILE = "history.db"
"""The local history's own SQLite file in the data directory: its pruning never holds a lock
the outbox waits for, and its size bound counts only its own pages."""


class HistoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    retention_hours: float = Field(default=6.0, gt=0, le=24 * 90)
    max_mb: int = Field(default=256, ge=8, description="Bound on the history's share of the file")
    min_interval: float = Field(
        default=5.0, ge=0, description="Seconds: at most one sample per tag this often"
    )
    flush_interval: float = Field(default=1.0, gt=0, le=60)


_NUMERIC = frozenset((int, float, bool))


@dataclass(frozen=True, slots=True)
class Sample:
    ts: int
    """Milliseconds since the epoch (the start of the bucket when downsampled)."""
    value: float
    min: float | None = None
    max: float | None = None


class History:
    def __init__(self, path: Path, config: HistoryConfig) -> None:
        self._db = open_database(path)
        """For the event loop: series ids and queries (WAL: never blocked by the writer)."""
        self._writer = open_database(path)
        """For the worker thread, one job at a time: inserts and pruning."""
        self._db.executescript(_SCHEMA)
        self.config = config
        self._min_interval_ms = int(config.min_interval * 1000)
        self._series: dict[tuple[str, str], int] = {
            (device, tag): sid
            for sid, device, tag in self._db.execute("SELECT id, device, tag FROM series")
        }
        self._next_series = max(self._series.values(), default=0) + 1
        self._new: list[tuple[int, str, str]] = []
        """Series numbered here but not yet stored: stored with the next flush, off the loop
        (100k new tags must not mean 100k INSERTs on the event loop)."""
        self._last: dict[tuple[str, str], int] = {}
        """Per (device, first tag of a batch): when that group was last sampled."""
        self._pending: list[tuple[int, int, float]] = []
        self.written = 0
        self.lost = 0
        """Samples the disk refused (full)."""
        self._failing = False
        self.skipped = 0
        """Values not kept: NaN and infinities (a number no chart can draw)."""
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "history-reader")
        """Queries run here, one at a time, never on the event loop."""

    def add(self, batch: Batch) -> None:
        """Take the numeric good readings of a batch (cheap; the write happens in flush()).

        Thinning is decided per batch (a device's group is polled as one), so most batches
        cost one dict lookup."""
        readings = batch.readings
        if not readings:
            return
        device = batch.device
        ts = batch.cycle_ns // 1_000_000
        group = (device, readings[0].tag)
        if ts - self._last.get(group, -self._min_interval_ms) < self._min_interval_ms:
            return
        self._last[group] = ts
        series, pending, bad = self._series, self._pending, Quality.BAD
        for _, tag, value, quality, source_ns, _, _ in readings:
            if quality is bad or type(value) not in _NUMERIC:
                continue
            number = float(value)  # type: ignore[arg-type]
            if not math.isfinite(number):
                self.skipped += 1  # SQLite would store NaN as NULL, which samples refuse
                continue
            sid = series.get((device, tag))
            if sid is None:
                sid = self._new_series((device, tag))
            pending.append((sid, source_ns // 1_000_000, number))

    def close(self) -> None:
        self._reader.shutdown(wait=True)
        self._db.close()
        self._writer.close()

    def _new_series(self, key: tuple[str, str]) -> int:
        sid = self._next_series
        self._next_series += 1
        self._series[key] = sid
        self._new.append((sid, *key))
        return sid

    async def run(self) -> None:
        """Flush pending samples every flush_interval and enforce the bounds every minute."""
        next_prune = 0.0
        while True:
            await asyncio.sleep(self.config.flush_interval)
            await self.flush()
            if time.monotonic() >= next_prune:
                try:
                    await asyncio.to_thread(self._prune)
                except sqlite3.OperationalError as exc:
                    log.debug("history: pruning failed: %s", exc)
                next_prune = time.monotonic() + 60

    async def flush(self) -> None:
        """Write what is pending. A disk that refuses costs these samples (counted in
        ``lost``, logged once per outage), never the history's task."""
        rows, self._pending = self._pending, []
        series, self._new = self._new, []
        if not rows and not series:
            return
        try:
            await asyncio.to_thread(self._insert, series, rows)
        except sqlite3.OperationalError as exc:
            self._new = series + self._new  # numbered already: stored with the next flush
            self.lost += len(rows)
            if not self._failing:
                log.error("history: samples not stored (%s); counted until it works again", exc)
            self._failing = True
            return
        if self._failing:
            log.warning("history: storing samples again (%d lost meanwhile)", self.lost)
            self._failing = False
        self.written += len(rows)

    def _insert(
        self, series: list[tuple[int, str, str]], rows: list[tuple[int, int, float]]
    ) -> None:
        with self._writer:
            self._writer.execute("BEGIN")
            self._writer.executemany(
                "INSERT INTO series (id, device, tag) VALUES (?, ?, ?)", series
            )
            self._writer.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", rows)

    def _prune(self) -> None:
        db = self._writer
        cutoff = int((time.time() - self.config.retention_hours * 3600) * 1000)
        db.execute("DELETE FROM samples WHERE ts < ?", (cutoff,))
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            db.execute("PRAGMA page_count").fetchone()[0]
            - db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        if pages * page_size > self.config.max_mb * 1024 * 1024:
            # Over the size bound: drop the oldest tenth of the samples.
            count = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            db.execute(
                "DELETE FROM samples WHERE ts <= (SELECT ts FROM samples ORDER BY ts "
                "LIMIT 1 OFFSET ?)",
                (max(count // 10, 1),),
            )
            log.warning("history: over %d MB; dropped the oldest tenth", self.config.max_mb)

    async def query(
        self, device: str, tag: str, start_ms: int, end_ms: int, bucket_ms: int | None = None
    ) -> list[Sample]:
        """Samples of one tag, off the event loop."""
        loop = asyncio.get_running_loop()
        sid = self._series.get((device, tag))
        if sid is None:
            return []
        return await loop.run_in_executor(
            self._reader, self._query, sid, start_ms, end_ms, bucket_ms
        )

    def _query(self, sid: int, start_ms: int, end_ms: int, bucket_ms: int | None) -> list[Sample]:
        if not bucket_ms:
            rows = self._db.execute(
                "SELECT ts, value FROM samples WHERE series = ? AND ts BETWEEN ? AND ? ORDER BY ts",
                (sid, start_ms, end_ms),
            ).fetchall()
            return [Sample(ts, value) for ts, value in rows]
        rows = self._db.execute(
            "SELECT (ts / ?) * ? AS bucket, AVG(value), MIN(value), MAX(value) FROM samples "
            "WHERE series = ? AND ts BETWEEN ? AND ? GROUP BY bucket ORDER BY bucket",
            (bucket_ms, bucket_ms, sid, start_ms, end_ms),
        ).fetchall()
        return [Sample(ts, mean, low, high) for ts, mean, low, high in rows]
