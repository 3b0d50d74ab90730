"""A private VictoriaMetrics per test: free port, own storage, stopped by PID.

It takes influxdb-client's writes (``/api/v2/write``; any token, org and bucket). What it keeps
(shared/services.md): metric ``{measurement}_{field}``, tags as labels, booleans as 1/0, strings
as 0, timestamps in milliseconds. A new series is visible about a second after a flush, so
readers ``flush()`` and then poll with a deadline (``wait_for_series``).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import orjson
import pytest

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["Series", "VictoriaMetrics", "victoria_binary"]

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def victoria_binary() -> str:
    """The victoria-metrics executable, or skip the test with how to install it."""
    binary = shutil.which("victoria-metrics", path=_SEARCH_PATH)
    if binary is None:
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")
    return binary


@dataclass(frozen=True, slots=True)
class Series:
    """One exported series: its name, labels and samples (timestamps in milliseconds)."""

    name: str
    labels: dict[str, str]
    values: list[float]
    timestamps: list[int]

    def samples(self) -> dict[int, float]:
        return dict(zip(self.timestamps, self.values, strict=True))


class VictoriaMetrics:
    """One server on ``host:port``; ``stop()`` then ``start()`` keeps port and stored data."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port(self.host)
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            victoria_binary(),
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={workdir / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]
        self.process = ManagedProcess(argv, workdir, name="victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> VictoriaMetrics:
        self.process.start()

        def healthy() -> bool:
            if not self.process.running:
                raise RuntimeError(f"victoria-metrics exited\n{self.process.describe()}")
            try:
                return self._get("/health") == b"OK"
            except OSError:
                return False

        wait_until(healthy, timeout, message=lambda: f"victoria-metrics on port {self.port}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (it saves what it holds), SIGKILL after ``timeout``."""
        self.process.stop(timeout)

    def flush(self) -> None:
        """Make what was written searchable (visible about a second later)."""
        self._get("/internal/force_flush")

    def export(self, match: str) -> list[Series]:
        """Every series matching the selector, e.g. ``{__name__=~"telemetry_.*"}``."""
        query = urllib.parse.urlencode({"match[]": match})
        body = self._get(f"/api/v1/export?{query}")
        found = []
        for line in body.splitlines():
            item = orjson.loads(line)
            labels = dict(item["metric"])
            name = labels.pop("__name__")
            found.append(Series(name, labels, item["values"], item["timestamps"]))
        return sorted(found, key=lambda s: (s.name, sorted(s.labels.items())))

    def wait_for_series(
        self,
        match: str,
        ready: Callable[[list[Series]], bool],
        timeout: float = 15.0,
    ) -> list[Series]:
        """Flush, then poll ``export(match)`` until ``ready`` accepts what it returns."""
        last: list[Series] = []

        def poll() -> list[Series] | None:
            nonlocal last
            self.flush()
            last = self.export(match)
            return last if ready(last) else None

        return wait_until(
            poll, timeout, message=lambda: f"series {match} (last seen: {last})", interval=0.2
        )

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            body: bytes = response.read()
            return body

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
