"""The local history: at most one sample per tag per interval, downsampling, retention."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson

from gateway.history import History, HistoryConfig
from gateway.outbox import decode_batch, encode_batch
from gateway.reading import Batch, Quality, Reading
from gateway.sinks.line_protocol import LineEncoder
from gateway.sinks.mqtt_payload import encode_telemetry

MS = 1_000_000


def batch(ts_ms: int, **values: object) -> Batch:
    readings = [
        Reading("dev", tag, value, Quality.GOOD, ts_ms * MS, ts_ms * MS)  # type: ignore[arg-type]
        for tag, value in values.items()
    ]
    return Batch("dev", readings, ts_ms * MS)


async def test_samples_are_thinned_typed_and_downsampled(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", HistoryConfig(min_interval=1.0))
    start = (int(time.time() * 1000) - 60_000) // 5000 * 5000  # aligned to the buckets below
    for i in range(20):  # every 0.5 s for 10 s
        history.add(batch(start + 500 * i, speed=float(i), name="x", on=True))
    bad = Reading("dev", "speed", None, Quality.BAD, (start + 20_000) * MS, 0, "timeout")
    history.add(Batch("dev", [bad], 0))
    await history.flush()
    raw = await history.query("dev", "speed", start, start + 60_000)
    assert [s.value for s in raw] == [float(i) for i in range(0, 20, 2)]
    assert [s.value for s in await history.query("dev", "on", start, start + 60_000)][:2] == [
        1.0,
        1.0,
    ]
    assert await history.query("dev", "name", start, start + 60_000) == []
    buckets = await history.query("dev", "speed", start, start + 60_000, bucket_ms=5000)
    assert [(b.min, b.max) for b in buckets][:2] in (
        [(0.0, 8.0), (10.0, 18.0)],
        [(0.0, 4.0), (6.0, 14.0)],
    )
    assert all(
        b.min is not None and b.max is not None and b.min <= b.value <= b.max for b in buckets
    )
    history.close()


async def test_series_survive_a_restart_and_old_samples_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = History(path, HistoryConfig(min_interval=0, retention_hours=1))
    now = int(time.time() * 1000)
    history.add(batch(now - 2 * 3_600_000, t=1.0))  # older than the retention
    history.add(batch(now - 1000, t=2.0))
    await history.flush()
    history._prune()
    history.close()
    reopened = History(path, HistoryConfig(min_interval=0))
    assert [s.value for s in await reopened.query("dev", "t", 0, now)] == [2.0]
    reopened.close()


async def test_the_size_bound_holds_when_more_came_than_a_tenth_of_it(tmp_path: Path) -> None:
    """20 MB of frames over an 8 MB bound (one minute of 100k tags sampled each second is
    48 MB over the default 256): pruning gets back under the bound at once, and the newest
    frames are the ones kept."""
    history = History(tmp_path / "h.db", HistoryConfig(min_interval=0, max_mb=8))
    now = int(time.time() * 1000)
    readings = batch(now, **{f"t{i}": float(i) for i in range(1000)}).readings
    frames = 2500  # 8 kB each
    for i in range(frames):
        history.add(Batch("dev", readings, (now - frames + i) * MS))
    await history.flush()
    history._prune()
    db = history._writer
    used = (
        db.execute("PRAGMA page_count").fetchone()[0]
        - db.execute("PRAGMA freelist_count").fetchone()[0]
    ) * db.execute("PRAGMA page_size").fetchone()[0]
    assert used <= 8 * 2**20
    kept = await history.query("dev", "t1", 0, now)
    assert kept[-1].ts == now - 1
    assert 0.8 * 8 * 2**20 / 8000 <= len(kept) < 8 * 2**20 / 8000
    history.close()


async def test_nan_infinities_arrays_and_none_never_break_a_store(tmp_path: Path) -> None:
    """One batch with every value a store may choke on: the history skips and counts what it
    cannot keep, the outbox round-trips it, the sinks' encoders take it."""
    history = History(tmp_path / "h.db", HistoryConfig(min_interval=0))
    now = int(time.time() * 1000)
    odd = batch(now, nan=math.nan, up=math.inf, down=-math.inf, array=[1, 2], none=None, fine=1.5)
    history.add(odd)
    await history.flush()
    history.add(batch(now + 1000, fine=2.5))  # and it keeps working afterwards
    await history.flush()
    assert history.skipped == 3
    assert [s.value for s in await history.query("dev", "fine", 0, now + 2000)] == [1.5, 2.5]
    assert await history.query("dev", "nan", 0, now + 2000) == []
    history.close()
    back = decode_batch(encode_batch(odd))
    assert [r.value for r in back.readings][3:] == [[1, 2], None, 1.5]
    assert [r.value for r in back.readings][:3] == [None, None, None]  # JSON has no NaN
    assert orjson.loads(encode_telemetry(odd))["values"]["nan"] is None
    encoder = LineEncoder("gw", "m", "ms", unsigned=True)
    assert b"fine=1.5" in encoder.encode([odd]).body
    assert encoder.skipped_values == 5
