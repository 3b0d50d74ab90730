"""InfluxDB sink: batches as line protocol, written through influxdb-client (v2) or to /write (v1).

- ``api: v2``: influxdb-client's ``InfluxDBClientAsync`` write API (aiohttp, on the event loop,
  no thread), ``POST /api/v2/write``: InfluxDB 2.x, 3.x, Cloud, 1.8+, VictoriaMetrics...
- ``api: v1``: aiohttp ``POST /write?db=..&rp=..`` for InfluxDB 1.x before 1.8, whose only
  write endpoint influxdb-client cannot use.

One ``write()`` is one HTTP request holding every batch the runtime hands over (up to
``runtime.write_max_batches``); the line protocol is built directly (``line_protocol``). The sink
never buffers or retries: a failure raises ``RetryableSinkError`` (the runtime keeps the data
and retries) or ``SinkError`` (see ``influx_errors`` for which is which). A partial write (HTTP
400: the server kept the valid points) returns normally; the rejected points are counted in
``rejected_points`` and the server's reason is logged once per kind of reason.
"""

from __future__ import annotations

import base64
import gzip
import logging
import re
import ssl
from collections.abc import Sequence
from typing import Protocol, cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from gateway.errors import RetryableSinkError, SinkError
from gateway.reading import Batch
from gateway.sinks.influx_config import InfluxConfig
from gateway.sinks.influx_errors import PartialWrite, classify
from gateway.sinks.line_protocol import LineEncoder

__all__ = ["InfluxSink"]

log = logging.getLogger(__name__)

_V1_PRECISION = {"ns": "ns", "us": "u", "ms": "ms", "s": "s"}
_MAX_REASONS = 100
"""Kinds of rejection reasons remembered for log-once; past it, new kinds are logged at debug."""
_NUMBERS = re.compile(r"\d+")


class InfluxSink:
    """Writes every good (and uncertain) reading to InfluxDB: one point per device and time."""

    durable = True

    def __init__(self, config: InfluxConfig, gateway_id: str, name: str = "influxdb") -> None:
        self.name = name
        self._config = config
        self._target = config.target
        self._encoder = LineEncoder(
            gateway_id,
            config.measurement,
            config.precision,
            unsigned=config.writes_unsigned,
            events_measurement=config.events_measurement,
        )
        self._transport: _Transport | None = None
        self._reasons: set[str] = set()
        self.written_points = 0
        """Points the server accepted."""
        self.rejected_points = 0
        """Points the server refused in partial writes (HTTP 400): dropped, not retried."""
        self.last_rejection: str | None = None
        """The server's reason for the latest partial write."""

    @property
    def skipped_values(self) -> int:
        """Values never sent: non-finite floats, None, arrays (see ``line_protocol``)."""
        return self._encoder.skipped_values

    async def start(self) -> None:
        """Set up the HTTP client; nothing is sent yet, so a server that is down is no error.

        Raises SinkError only if the TLS CA file is unusable.
        """
        if self._transport is not None:
            return
        config = self._config
        try:
            self._transport = _V2Transport(config) if config.api == "v2" else _V1Transport(config)
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"{self._target}: cannot load the TLS CA file: {exc}") from exc
        log.info("InfluxDB sink: writing to %s (api %s)", self._target, config.api)

    async def write(self, batches: Sequence[Batch]) -> None:
        """Send every batch in one request; return once the server accepted or refused it."""
        transport = self._transport
        if transport is None:
            raise RetryableSinkError(f"{self._target}: the sink is not started")
        encoded = self._encoder.encode(batches)
        if not encoded.points:
            return
        try:
            await transport.post(encoded.body)
        except _HttpStatus as failure:
            outcome = classify(failure.status, failure.body, failure.retry_after, self._target)
            if isinstance(outcome, SinkError):
                raise outcome from None
            self._partial(outcome, encoded.points)
            return
        self.written_points += encoded.points

    async def stop(self) -> None:
        """Close the HTTP client. Idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    def _partial(self, partial: PartialWrite, points: int) -> None:
        rejected = points if partial.rejected is None else min(partial.rejected, points)
        self.rejected_points += rejected
        self.written_points += points - rejected
        self.last_rejection = partial.reason
        kind = _NUMBERS.sub("N", partial.reason)[:200]
        if kind in self._reasons or len(self._reasons) >= _MAX_REASONS:
            log.debug("%s rejected %d of %d points: %s", self._target, rejected, points, kind)
            return
        self._reasons.add(kind)
        log.warning(
            "%s rejected %d of %d points; they are dropped (logged once per reason): %s",
            self._target,
            rejected,
            points,
            partial.reason,
        )


class _HttpStatus(Exception):
    """The server answered a write with an error status."""

    def __init__(self, status: int, body: bytes | str | None, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


class _Transport(Protocol):
    """One HTTP write of a line protocol body: returns on success, raises ``_HttpStatus`` for an
    error status and ``RetryableSinkError`` when there is no answer."""

    async def post(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def _unreachable(config: InfluxConfig, exc: BaseException) -> RetryableSinkError:
    if isinstance(exc, TimeoutError) and not str(exc):
        return RetryableSinkError(f"{config.target}: no answer within {config.timeout:g} s")
    return RetryableSinkError(f"{config.target}: unreachable: {exc or type(exc).__name__}")


class _V2Transport:
    """``POST /api/v2/write`` through influxdb-client's async write API."""

    def __init__(self, config: InfluxConfig) -> None:
        assert config.bucket is not None and config.org is not None
        self._config = config
        self._bucket = config.bucket
        self._org = config.org
        # WritePrecision's values are plain strings, the same as ours ("ms", ...).
        self._precision = cast(WritePrecision, config.precision)
        self._client = InfluxDBClientAsync(
            url=config.base_url,
            token=config.token.get_secret_value() if config.token is not None else "",
            org=config.org,
            timeout=int(config.timeout * 1000),
            enable_gzip=config.gzip,
            verify_ssl=config.verify_tls,
            ssl_ca_cert=str(config.ca_file) if config.ca_file is not None else None,
        )
        self._api: WriteApiAsync = self._client.write_api()

    async def post(self, body: bytes) -> None:
        try:
            await self._api.write(
                self._bucket, self._org, record=body, write_precision=self._precision
            )
        except ApiException as exc:
            raise _HttpStatus(exc.status, exc.body, exc.retry_after) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(self._config, exc) from exc

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


class _V1Transport:
    """``POST /write`` of InfluxDB 1.x, with aiohttp (which influxdb-client[async] brings)."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self._url = f"{config.base_url}/write"
        params = {"db": str(config.database), "precision": _V1_PRECISION[config.precision]}
        if config.retention_policy is not None:
            params["rp"] = config.retention_policy
        self._params = params
        self._gzip = config.gzip
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if config.gzip:
            headers["Content-Encoding"] = "gzip"
        if config.username is not None:
            password = config.password.get_secret_value() if config.password is not None else ""
            credentials = base64.b64encode(f"{config.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(config)),
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            headers=headers,
        )

    async def post(self, body: bytes) -> None:
        data = gzip.compress(body, compresslevel=1) if self._gzip else body
        try:
            async with self._session.post(self._url, params=self._params, data=data) as response:
                if 200 <= response.status < 300:
                    return
                error = await response.read()
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(self._config, exc) from exc
        raise _HttpStatus(response.status, error, retry_after)

    async def close(self) -> None:
        await self._session.close()


def _ssl_context(config: InfluxConfig) -> ssl.SSLContext | bool:
    """The TLS settings of aiohttp's connector: True is its default verification."""
    if config.ca_file is None and config.verify_tls:
        return True
    context = ssl.create_default_context(
        cafile=str(config.ca_file) if config.ca_file is not None else None
    )
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
