"""The data directory: one gateway at a time, and a damaged database set aside, not looped on."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.datadir import DataDir, DataDirInUse


def test_a_second_gateway_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = DataDir(tmp_path / "data")
    first.lock()
    with pytest.raises(DataDirInUse, match=rf"is in use by PID {os.getpid()}"):
        DataDir(tmp_path / "data").lock()
    first.release()
    again = DataDir(tmp_path / "data")
    again.lock()  # free once the holder lets go (or exits)
    again.release()


def make_database(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, doc BLOB)")
    db.executemany("INSERT INTO t (doc) VALUES (?)", [(os.urandom(200),) for _ in range(rows)])
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_a_damaged_database_is_set_aside_with_one_clear_line(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    make_database(path, 2000)
    if damage == "junk":
        path.write_bytes(b"this is no database" * 100)
    else:
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
    with caplog.at_level(logging.ERROR):
        aside = DataDir(tmp_path).set_aside_if_damaged("gateway.db", "the outbox")
    assert aside is not None and aside.name.startswith("gateway.db.damaged-")
    assert aside.exists() and not path.exists()
    [line] = caplog.messages
    assert str(path) in line and str(aside) in line and "lost with it: the outbox" in line


def test_a_sound_database_stays(tmp_path: Path) -> None:
    make_database(tmp_path / "gateway.db", 10)
    assert DataDir(tmp_path).set_aside_if_damaged("gateway.db", "the outbox") is None
    assert DataDir(tmp_path).set_aside_if_damaged("missing.db", "nothing") is None
