"""A private InfluxDB 1.x (Debian's 1.6.7) per test: free ports, own dirs, stopped by PID.

Only its v1 API exists (``/write``, ``/query``); influxdb-client cannot write to it, which is
what the sink's ``api: v1`` is for. With ``admin=(user, password)`` authentication is on and
that user is created at the first start (1.x allows that one request without credentials).
"""

from __future__ import annotations

import base64
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["InfluxDB1", "influxd_binary"]

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def influxd_binary() -> str:
    """The influxd (1.x) executable, or skip the test with how to install it."""
    binary = shutil.which("influxd", path=_SEARCH_PATH)
    if binary is None:
        pytest.skip("influxd is not installed (apt-get install influxdb influxdb-client)")
    return binary


class InfluxQLError(Exception):
    """The server answered a query with an error."""


class InfluxDB1:
    """One server; ``stop()`` then ``start()`` keeps its ports and data."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, *, admin: tuple[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port(self.host)
        self.rpc_port = free_port(self.host)
        self.admin = admin
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "influxdb.conf"
        self.process = ManagedProcess(
            [influxd_binary(), "-config", str(self.config_path)], workdir, name="influxd"
        )
        self._admin_created = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> InfluxDB1:
        self.config_path.write_text(self._config())
        self.process.start()

        def pinged() -> bool:
            if not self.process.running:
                raise RuntimeError(f"influxd exited\n{self.process.describe()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    status: int = response.status
                    return status == 204
            except OSError:
                return False

        wait_until(pinged, timeout, message=lambda: f"influxd on port {self.port}")
        if self.admin is not None and not self._admin_created:
            user, password = self.admin
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
            self._admin_created = True
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.process.stop(timeout)

    def query(self, statement: str, db: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL (as the admin, if any) and return its results; raise on an error."""
        params = {"q": statement, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(params).encode(), method="POST"
        )
        if self.admin is not None and self._admin_created:
            token = base64.b64encode(":".join(self.admin).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise InfluxQLError(f"{statement}: HTTP {exc.code} {exc.read()!r}") from exc
        results: list[dict[str, Any]] = body.get("results", [])
        errors = [r["error"] for r in results if "error" in r]
        if "error" in body or errors:
            raise InfluxQLError(f"{statement}: {body.get('error') or errors}")
        return results

    def rows(self, statement: str, db: str) -> list[dict[str, Any]]:
        """The rows of a SELECT as dicts (``time`` in ns), series after series."""
        found = []
        for result in self.query(statement, db):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    found.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return found

    def field_types(self, db: str, measurement: str) -> dict[str, str]:
        """Field name → type (``float``, ``integer``, ``boolean``, ``string``)."""
        statement = f'SHOW FIELD KEYS FROM "{measurement}"'
        return {row["fieldKey"]: row["fieldType"] for row in self.rows(statement, db)}

    def _config(self) -> str:
        root = self.workdir
        auth = "true" if self.admin is not None else "false"
        return f"""\
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{root / "meta"}"
  logging-enabled = false
[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  auth-enabled = {auth}
[logging]
  level = "warn"
"""
