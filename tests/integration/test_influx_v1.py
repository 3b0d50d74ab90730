"""The InfluxDB sink's v1 path (``/write``) against a real InfluxDB 1.6.7, read back with InfluxQL.

The server runs with authentication on, so credentials and permissions are exercised too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.errors import RetryableSinkError, SinkError
from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.influx import InfluxSink
from gateway.sinks.influx_config import InfluxConfig
from tests.support.influxdb1 import InfluxDB1

pytestmark = pytest.mark.integration

ADMIN = ("admin", "s3cret")
T0 = 1_732_600_000_123_456_789


@pytest.fixture(scope="module")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    server = InfluxDB1(tmp_path_factory.mktemp("influxdb1"), admin=ADMIN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(influxdb: InfluxDB1) -> str:
    name = f"db_{uuid.uuid4().hex[:8]}"
    influxdb.query(f'CREATE DATABASE "{name}"')
    return name


def config_for(server: InfluxDB1, database: str, **options: Any) -> InfluxConfig:
    settings: dict[str, Any] = {"username": ADMIN[0], "password": ADMIN[1], **options}
    return InfluxConfig(api="v1", url=server.url, database=database, **settings)


@asynccontextmanager
async def running(config: InfluxConfig) -> AsyncIterator[InfluxSink]:
    sink = InfluxSink(config, "gw-it")
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


def one(device: str, tag: str, value: Value, ns: int = T0, **labels: str) -> Batch:
    return Batch(device, [Reading(device, tag, value, Quality.GOOD, ns, ns)], ns, labels)


@pytest.mark.parametrize(
    ("precision", "compress"), [("ns", False), ("us", True), ("ms", False), ("s", True)]
)
async def test_values_keep_their_types_tags_and_timestamps(
    influxdb: InfluxDB1, database: str, precision: str, compress: bool
) -> None:
    values: dict[str, Value] = {
        "temperature": 61.5,
        "whole_float": 3.0,
        "count": 1450,
        "negative": -1234567890123,
        "running": True,
        "model": 'SIM "PLC" 1\\',
        "serial": 18000000000000000001,  # beyond int64: a float on 1.x (no unsigned type)
    }
    readings = [Reading("press-1", t, v, Quality.GOOD, T0, T0) for t, v in values.items()]
    readings.append(Reading("press-1", "broken", None, Quality.BAD, T0, T0, "timeout"))
    readings.append(Reading("press-1", "inf", float("inf"), Quality.GOOD, T0, T0))
    batch = Batch("press-1", readings, T0, {"site": "plant1", "line": "line1"})
    config = config_for(influxdb, database, precision=precision, gzip=compress)
    async with running(config) as sink:
        await sink.write([batch])
    assert sink.written_points == 1

    assert influxdb.field_types(database, "telemetry") == {
        "temperature": "float",
        "whole_float": "float",
        "count": "integer",
        "negative": "integer",
        "running": "boolean",
        "model": "string",
        "serial": "float",
    }
    [row] = influxdb.rows('SELECT * FROM "telemetry"', database)
    unit = {"ns": 1, "us": 1000, "ms": 1_000_000, "s": 10**9}[precision]
    assert row == {
        "time": T0 // unit * unit,
        "gateway": "gw-it",
        "device": "press-1",
        "site": "plant1",
        "line": "line1",
        **values,
        "serial": 1.8e19,
    }


async def test_names_that_need_escaping_round_trip(influxdb: InfluxDB1, database: str) -> None:
    measurement = "machine data, hall=2"
    device = "Presse-Süd 東京"
    labels = {"site": "plant 1, hall=2", "owner": 'Bob "the builder"', "zone": "Zürich"}
    tags: dict[str, Value] = {"motor speed": 1.0, "a,b=c": 2.0, 'say "hi"': 3.0, "温度": 4.0}
    readings = [Reading(device, t, v, Quality.GOOD, T0, T0) for t, v in tags.items()]
    async with running(config_for(influxdb, database)) as sink:
        await sink.write([Batch(device, readings, T0, labels, measurement)])
    [row] = influxdb.rows('SELECT * FROM "machine data, hall=2"', database)
    assert row == {"time": T0 // 1_000_000 * 1_000_000, "gateway": "gw-it", "device": device,
                   **labels, **tags}  # fmt: skip


async def test_one_point_per_device_and_poll(influxdb: InfluxDB1, database: str) -> None:
    batches = [
        Batch(
            device,
            [
                Reading(device, "speed", 100 * cycle + d, Quality.GOOD, T0 + cycle * 10**9, T0),
                Reading(device, "temp", 20.5 + cycle, Quality.GOOD, T0 + cycle * 10**9, T0),
            ],
            T0 + cycle * 10**9,
            {"cell": f"c{d}"},
        )
        for cycle in range(3)
        for d, device in enumerate(("d0", "d1"))
    ]
    async with running(config_for(influxdb, database, precision="s")) as sink:
        await sink.write(batches)
    rows = influxdb.rows('SELECT "speed", "temp" FROM "telemetry" GROUP BY "device"', database)
    s0 = T0 // 10**9 * 10**9
    assert rows == [
        {"device": f"d{d}", "time": s0 + c * 10**9, "speed": 100 * c + d, "temp": 20.5 + c}
        for d in range(2)
        for c in range(3)
    ]


async def test_a_type_conflict_drops_only_that_point_counts_it_and_logs_once(
    influxdb: InfluxDB1, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(config_for(influxdb, database)) as sink:
        await sink.write([one("d1", "level", 5)])  # "level" is now an integer field
        with caplog.at_level(logging.WARNING, logger="gateway.sinks.influx"):
            for cycle in range(1, 4):
                ns = T0 + cycle * 10**9
                await sink.write([one("d1", "level", 5.5, ns), one("d2", "level", 7, ns)])
    assert (sink.written_points, sink.rejected_points) == (4, 3)
    assert sink.last_rejection is not None and "field type conflict" in sink.last_rejection
    [warning] = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert "already exists as type integer" in warning.getMessage()
    rows = influxdb.rows('SELECT "level" FROM "telemetry" GROUP BY "device"', database)
    assert [(r["device"], r["level"]) for r in rows] == [("d1", 5)] + [("d2", 7)] * 3


async def test_a_wrong_password_is_a_clear_error_that_holds_the_data(
    influxdb: InfluxDB1, database: str
) -> None:
    async with running(config_for(influxdb, database, password="wrong")) as sink:
        with pytest.raises(SinkError) as caught:
            await sink.write([one("d1", "x", 1)])
    assert isinstance(caught.value, RetryableSinkError)  # the data is held, not dropped
    assert "HTTP 401: authorization failed" in str(caught.value)
    assert "username and password" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_a_user_without_write_permission_is_a_clear_error_that_holds_the_data(
    influxdb: InfluxDB1, database: str
) -> None:
    user = f"reader_{uuid.uuid4().hex[:6]}"
    influxdb.query(f"CREATE USER \"{user}\" WITH PASSWORD 'pw'")
    influxdb.query(f'GRANT READ ON "{database}" TO "{user}"')
    async with running(config_for(influxdb, database, username=user, password="pw")) as sink:
        with pytest.raises(SinkError) as caught:
            await sink.write([one("d1", "x", 1)])
    assert isinstance(caught.value, RetryableSinkError)  # the data is held, not dropped
    assert "HTTP 403" in str(caught.value) and "not authorized to write" in str(caught.value)


async def test_an_unknown_database_is_a_clear_error_that_holds_the_data(
    influxdb: InfluxDB1,
) -> None:
    async with running(config_for(influxdb, "no_such_db")) as sink:
        with pytest.raises(SinkError) as caught:
            await sink.write([one("d1", "x", 1)])
    assert isinstance(caught.value, RetryableSinkError)  # the data is held, not dropped
    assert 'HTTP 404: database not found: "no_such_db"' in str(caught.value)
    assert "(database no_such_db)" in str(caught.value)


async def test_an_unknown_retention_policy_is_a_clear_error_that_holds_the_data(
    influxdb: InfluxDB1, database: str
) -> None:
    async with running(config_for(influxdb, database, retention_policy="nope")) as sink:
        with pytest.raises(SinkError) as caught:
            await sink.write([one("d1", "x", 1)])
    assert isinstance(caught.value, RetryableSinkError)  # the data is held, not dropped
    assert "retention policy not found: nope" in str(caught.value)
