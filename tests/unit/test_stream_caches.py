"""The outbox's and history's connections keep a small page cache (gateway/registry.py)."""

from __future__ import annotations

from pathlib import Path

from gateway.history import History, HistoryConfig
from gateway.outbox import Outbox, OutboxConfig
from gateway.registry import STREAM_CACHE_KIB, open_database


def _cache_kib(connection: object) -> int:
    (size,) = connection.execute("PRAGMA cache_size").fetchone()  # type: ignore[attr-defined]
    return -int(size)


def test_the_streams_use_the_small_cache_and_others_the_default(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    outbox = Outbox(path, ["mqtt"], OutboxConfig())
    history = History(path, HistoryConfig())
    try:
        assert _cache_kib(outbox._db) == STREAM_CACHE_KIB
        assert _cache_kib(history._db) == _cache_kib(history._writer) == STREAM_CACHE_KIB
        assert _cache_kib(open_database(path)) == 2000  # SQLite's default, for the registry
    finally:
        history.close()
        outbox.close()
