"""The local history: at most one sample per tag per interval, downsampling, retention."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.history import History, HistoryConfig
from gateway.reading import Batch, Quality, Reading

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
    raw = history.query("dev", "speed", start, start + 60_000)
    assert [s.value for s in raw] == [float(i) for i in range(0, 20, 2)]
    assert [s.value for s in history.query("dev", "on", start, start + 60_000)][:2] == [1.0, 1.0]
    assert history.query("dev", "name", start, start + 60_000) == []
    buckets = history.query("dev", "speed", start, start + 60_000, bucket_ms=5000)
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
    assert [s.value for s in reopened.query("dev", "t", 0, now)] == [2.0]
    reopened.close()
