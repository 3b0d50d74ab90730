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
import struct
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.reading import Batch, Quality, Reading
from gateway.registry import STREAM_CACHE_KIB, open_database

__all__ = ["HISTORY_FILE", "History", "HistoryConfig", "Sample"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layouts (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, tags TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    layout INTEGER NOT NULL, ts INTEGER NOT NULL, vals BLOB NOT NULL,
    PRIMARY KEY (layout, ts)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frames_ts ON frames (ts);
"""
_OLD_TABLES = ("samples", "series")
"""The first format: one row per tag and sample. 100k tags sampled every 5 s were 20k rows a
second scattered over a B-tree of 100k series, whose insert cost grew with the file (measured:
13.8 % of the gateway's CPU after 20 s, 20.9 % after 3.5 min, at 100 x 1000 @ 1 s)."""


HISTORY_FILE = "history.db"
"""The local history's own SQLite file in the data directory: its pruning never holds a lock
the outbox waits for, and its size bound counts only its own pages."""


class HistoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    retention_hours: float = Field(default=6.0, gt=0, le=24 * 90)
    max_mb: int = Field(
        default=256, ge=8, description="Bound on the pages in use (free pages and the WAL aside)"
    )
    min_interval: float = Field(
        default=5.0, ge=0, description="Seconds: at most one sample per tag this often"
    )
    flush_interval: float = Field(default=1.0, gt=0, le=60)


_NUMERIC = frozenset((int, float, bool))
_NO_VALUE = [math.nan]
_DOUBLE = struct.Struct("=d")
"""Frames hold the machine's native doubles: written and read by this process only."""


@dataclass(frozen=True, slots=True)
class Sample:
    ts: int
    """Milliseconds since the epoch (the start of the bucket when downsampled)."""
    value: float
    min: float | None = None
    max: float | None = None


class _Layout:
    """The tags of one group of a device, in the order their values are packed in a frame."""

    __slots__ = ("id", "index", "tags")

    def __init__(self, layout_id: int, tags: list[str], index: dict[str, int]) -> None:
        self.id = layout_id
        self.tags = tags
        self.index = index
        """Tag → position; one dict shared by the layouts with the same tags (one profile)."""


def _pack(layout: _Layout, readings: list[Reading]) -> tuple[array[float], int, int]:
    """The batch's numeric good values in the layout's order (NaN: no value), how many there
    are, and how many were skipped (NaN, infinities). KeyError for a tag not in the layout."""
    values = array("d", _NO_VALUE) * len(layout.tags)
    index, bad, kept, skipped = layout.index, Quality.BAD, 0, 0
    for _, tag, value, quality, _, _, _ in readings:
        if quality is bad or type(value) not in _NUMERIC:
            continue
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            skipped += 1  # NaN marks "no value" in a frame
            continue
        values[index[tag]] = number
        kept += 1
    return values, kept, skipped


class History:
    """One row (a *frame*) per sampled batch: the group's numeric values packed as float64,
    NaN where a tag has no value. A device's group sampled every 5 s is one INSERT, whatever
    its number of tags, and its rows sit together; a query reads one float per frame."""

    def __init__(self, path: Path, config: HistoryConfig) -> None:
        self._db = open_database(path, cache_kib=STREAM_CACHE_KIB)
        """For the event loop: layouts and queries (WAL: never blocked by the writer)."""
        self._writer = open_database(path, cache_kib=STREAM_CACHE_KIB)
        """For the worker thread, one job at a time: inserts and pruning."""
        old = [
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if name in _OLD_TABLES
        ]
        if old:
            log.info("history: the previous format's samples are dropped (a new file format)")
            for name in old:
                self._db.execute(f"DROP TABLE {name}")
        self._db.executescript(_SCHEMA)
        self.config = config
        self._min_interval_ms = int(config.min_interval * 1000)
        self._groups: dict[tuple[str, str], _Layout] = {}
        """The latest layout of each group: (device, first tag of its batches)."""
        self._by_device: dict[str, list[_Layout]] = {}
        """Every layout of each device, old ones included: a query looks for its tag in each."""
        self._indexes: dict[tuple[str, ...], dict[str, int]] = {}
        """The shared index of each tag list: 100 devices of one profile keep one, not 100."""
        self._next_layout = 1
        for layout_id, device, tags in self._db.execute(
            "SELECT id, device, tags FROM layouts ORDER BY id"
        ):
            self._known(device, self._layout(layout_id, orjson.loads(tags)))
        self._new: list[tuple[int, str, str]] = []
        """Layouts numbered here but not yet stored: stored with the next flush, off the loop."""
        self._last: dict[tuple[str, str], int] = {}
        """Per group: when it was last sampled."""
        self._pending: list[tuple[int, int, bytes]] = []
        self.written = 0
        """Values stored."""
        self.lost = 0
        """Values the disk refused (full)."""
        self._pending_values = 0
        self._failing = False
        self.skipped = 0
        """Values not kept: NaN and infinities (a number no chart can draw)."""
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "history-reader")
        """Queries run here, one at a time, never on the event loop."""

    def _layout(self, layout_id: int, tags: list[str]) -> _Layout:
        key = tuple(tags)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = {tag: position for position, tag in enumerate(tags)}
        return _Layout(layout_id, tags, index)

    def _known(self, device: str, layout: _Layout) -> None:
        self._groups[device, layout.tags[0]] = layout
        self._by_device.setdefault(device, []).append(layout)
        self._next_layout = max(self._next_layout, layout.id + 1)

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
        layout = self._groups.get(group)
        try:
            if layout is None:
                raise KeyError(readings[0].tag)
            values, kept, skipped = _pack(layout, readings)
        except KeyError:  # a tag the group's layout does not have yet (rare)
            layout = self._extend(device, layout, readings)
            values, kept, skipped = _pack(layout, readings)
        self.skipped += skipped
        if kept:
            self._pending.append((layout.id, ts, values.tobytes()))
            self._pending_values += kept

    def _extend(self, device: str, layout: _Layout | None, readings: list[Reading]) -> _Layout:
        """A new layout for a group: its tags so far, then the batch's new ones."""
        tags = [] if layout is None else list(layout.tags)
        known = set(tags)
        for reading in readings:
            if reading.tag not in known:
                known.add(reading.tag)
                tags.append(reading.tag)
        extended = self._layout(self._next_layout, tags)
        self._known(device, extended)
        self._new.append((extended.id, device, orjson.dumps(tags).decode()))
        return extended

    def close(self) -> None:
        self._reader.shutdown(wait=True)
        self._db.close()
        self._writer.close()

    async def run(self) -> None:
        """Flush pending frames every flush_interval and enforce the bounds every minute."""
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
        """Write what is pending. A disk that refuses costs these values (counted in
        ``lost``, logged once per outage), never the history's task."""
        rows, self._pending = self._pending, []
        values, self._pending_values = self._pending_values, 0
        layouts, self._new = self._new, []
        if not rows and not layouts:
            return
        try:
            await asyncio.to_thread(self._insert, layouts, rows)
        except sqlite3.OperationalError as exc:
            self._new = layouts + self._new  # numbered already: stored with the next flush
            self.lost += values
            if not self._failing:
                log.error("history: samples not stored (%s); counted until it works again", exc)
            self._failing = True
            return
        if self._failing:
            log.warning("history: storing samples again (%d lost meanwhile)", self.lost)
            self._failing = False
        self.written += values

    def _insert(
        self, layouts: list[tuple[int, str, str]], rows: list[tuple[int, int, bytes]]
    ) -> None:
        with self._writer:
            self._writer.execute("BEGIN")
            self._writer.executemany(
                "INSERT INTO layouts (id, device, tags) VALUES (?, ?, ?)", layouts
            )
            self._writer.executemany("INSERT OR REPLACE INTO frames VALUES (?, ?, ?)", rows)

    def _prune(self) -> None:
        db = self._writer
        cutoff = int((time.time() - self.config.retention_hours * 3600) * 1000)
        db.execute("DELETE FROM frames WHERE ts < ?", (cutoff,))
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            db.execute("PRAGMA page_count").fetchone()[0]
            - db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        used, bound = pages * page_size, self.config.max_mb * 1024 * 1024
        if used > bound:
            # Back to 90 % of the bound, a tenth at least. Only a tenth each time let the file
            # grow past its bound for good whenever a minute brought more than a tenth of it
            # (100k tags sampled every second: 48 MB a minute).
            share = max(0.1, 1 - 0.9 * bound / used)
            count = db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
            db.execute(
                "DELETE FROM frames WHERE ts <= (SELECT ts FROM frames ORDER BY ts "
                "LIMIT 1 OFFSET ?)",
                (max(int(count * share) - 1, 0),),
            )
            log.warning(
                "history: %.0f MB, over its bound of %d MB; dropped the oldest %.0f %%",
                used / 2**20, self.config.max_mb, 100 * share,
            )  # fmt: skip

    async def query(
        self, device: str, tag: str, start_ms: int, end_ms: int, bucket_ms: int | None = None
    ) -> list[Sample]:
        """Samples of one tag, off the event loop."""
        loop = asyncio.get_running_loop()
        places = [
            (layout.id, position)
            for layout in self._by_device.get(device, ())
            if (position := layout.index.get(tag)) is not None
        ]
        if not places:
            return []
        return await loop.run_in_executor(
            self._reader, self._query, places, start_ms, end_ms, bucket_ms
        )

    def _query(
        self, places: list[tuple[int, int]], start_ms: int, end_ms: int, bucket_ms: int | None
    ) -> list[Sample]:
        position = dict(places)
        marks = ",".join("?" * len(position))
        rows = self._db.execute(
            f"SELECT layout, ts, vals FROM frames WHERE layout IN ({marks})"
            " AND ts BETWEEN ? AND ? ORDER BY ts",
            (*position, start_ms, end_ms),
        )
        points = [
            (ts, value)
            for layout, ts, vals in rows
            if not math.isnan(value := _DOUBLE.unpack_from(vals, 8 * position[layout])[0])
        ]
        if not bucket_ms:
            return [Sample(ts, value) for ts, value in points]
        buckets: dict[int, list[float]] = {}
        for ts, value in points:
            buckets.setdefault(ts // bucket_ms * bucket_ms, []).append(value)
        return [
            Sample(bucket, sum(values) / len(values), min(values), max(values))
            for bucket, values in buckets.items()
        ]
