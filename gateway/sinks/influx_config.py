"""Configuration of the InfluxDB sink (pydantic v2; every error names its field).

``api: v2`` (the default) writes through influxdb-client to ``/api/v2/write``: InfluxDB 2.x,
3.x, Cloud, 1.8+ (its v2 compatibility endpoint) and other servers speaking that protocol.
``api: v1`` posts the same line protocol to ``/write`` for InfluxDB 1.x before 1.8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.devices import Measurement
from gateway.plugins import SinkConfigBase

__all__ = ["InfluxConfig", "Precision"]

Precision = Literal["s", "ms", "us", "ns"]


_V2_ONLY = ("org", "bucket", "token")
_V1_ONLY = ("database", "retention_policy", "username", "password")


class InfluxConfig(SinkConfigBase):
    """Where and how the InfluxDB sink writes. Batching and retries are the runtime's."""

    type: Literal["influxdb"] = "influxdb"
    api: Literal["v2", "v1"] = "v2"
    """``v2``: /api/v2/write through influxdb-client; ``v1``: /write of InfluxDB 1.x."""
    url: str = Field(min_length=1)
    """Base URL of the server, e.g. ``http://127.0.0.1:8086`` (a path prefix is kept)."""
    org: str | None = Field(default=None, min_length=1)
    """api v2: organization name or id (InfluxDB 1.8 and Cloud ignore it: any value, e.g. "-")."""
    bucket: str | None = Field(default=None, min_length=1)
    """api v2: bucket (InfluxDB 1.8: ``database/retention_policy``)."""
    token: SecretStr | None = None
    """api v2: API token (InfluxDB 1.8: ``username:password``); none for an open server."""
    database: str | None = Field(default=None, min_length=1)
    """api v1: database."""
    retention_policy: str | None = Field(default=None, min_length=1)
    """api v1: retention policy; none means the database's default."""
    username: str | None = Field(default=None, min_length=1)
    """api v1: user (HTTP basic authentication)."""
    password: SecretStr | None = None
    measurement: Measurement = "telemetry"
    events_measurement: Measurement = "events"
    """Where devices' events and alarm transitions go, one point each."""
    """Measurement of devices whose profile or own config names none."""
    precision: Precision = "ms"
    """Timestamp precision written; source timestamps are truncated to it."""
    unsigned: bool | None = None
    """Write ints beyond int64 as unsigned (``123u``) rather than as floats. Default: yes for
    api v2 (InfluxDB 2.x/3.x have uint64), no for v1; set false for InfluxDB 1.8 on api v2."""
    gzip: bool = False
    """Compress request bodies: worth it on slow links (Cloud); costs CPU on a LAN."""
    timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds for one write request, connecting included; past it the write is retried."""
    ca_file: Path | None = None
    """CA bundle for an https server signed by a private CA; none means the system's."""
    verify_tls: bool = True
    """Check the server's certificate (turn off only for a test server)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http://host:port or https://host:port")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("the port must be a number from 0 to 65535") from None
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.api == "v2":
            self._require("v2", ("org", "bucket"))
            self._forbid("v2", _V1_ONLY)
        else:
            self._require("v1", ("database",))
            self._forbid("v1", _V2_ONLY)
            if self.password is not None and self.username is None:
                raise ValueError("a password needs a username")
        return self

    def _require(self, api: str, names: tuple[str, ...]) -> None:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(f"api {api} needs {' and '.join(repr(n) for n in missing)}")

    def _forbid(self, api: str, names: tuple[str, ...]) -> None:
        given = [name for name in names if getattr(self, name) is not None]
        if given:
            raise ValueError(f"{', '.join(repr(n) for n in given)}: not used by api {api}")

    @property
    def base_url(self) -> str:
        """``url`` without a trailing slash, ready for a path to be appended."""
        return self.url.rstrip("/")

    @property
    def writes_unsigned(self) -> bool:
        """Whether ints beyond int64 are written as unsigned integers (else as floats)."""
        return self.api == "v2" if self.unsigned is None else self.unsigned

    @property
    def target(self) -> str:
        """Where writes go, for logs and errors: URL and bucket or database."""
        if self.api == "v2":
            return f"InfluxDB {self.base_url} (bucket {self.bucket})"
        where = (
            self.database
            if self.retention_policy is None
            else (f"{self.database}.{self.retention_policy}")
        )
        return f"InfluxDB {self.base_url} (database {where})"
