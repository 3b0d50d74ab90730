"""The gateway's data directory: one gateway per directory, and SQLite files that open.

- ``lock()``: an exclusive ``flock`` on ``gateway.lock``, taken before anything else; a second
  gateway on the same directory is refused at once, naming the PID that holds it.
- ``set_aside_if_damaged()``: a database SQLite cannot open, or whose ``quick_check`` fails, is
  renamed ``<name>.damaged-<timestamp>`` (with its WAL) and the gateway starts fresh, saying what
  was lost: never a restart loop on a file that cannot be read.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["LOCK_FILE", "DataDir", "DataDirInUse"]

log = logging.getLogger(__name__)

LOCK_FILE = "gateway.lock"


class DataDirInUse(GatewayError):
    """Another gateway process holds the data directory."""


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def lock(self) -> None:
        """Hold the directory for this process until it exits (or ``release()``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data dir {self.path} is in use by PID {holder}: one gateway per data dir"
                " (give this one a gateway.data_dir of its own)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def set_aside_if_damaged(self, name: str, holds: str) -> Path | None:
        """Check ``name``; if it is damaged, rename it and return the new path. ``holds`` says
        what the file keeps, for the log line."""
        path = self.path / name
        if not path.exists():
            return None
        problem = _damage(path)
        if problem is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(Path(f"{aside}{suffix}"))
        log.error(
            "%s is damaged (%s): moved to %s and starting with a new one; lost with it: %s"
            " (sqlite3 %s .recover may get some of it back)",
            path,
            problem,
            aside,
            holds,
            aside,
        )
        return aside


def _damage(path: Path) -> str | None:
    """Why SQLite cannot use the file, or None."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [row[0] for row in rows]
    return None if found == ["ok"] else "; ".join(found[:3])
