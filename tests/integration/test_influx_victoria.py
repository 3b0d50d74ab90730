"""The InfluxDB sink's v2 path (influxdb-client) against a real VictoriaMetrics.

VictoriaMetrics keeps ``{measurement}_{field}`` series with the tags as labels, booleans as 1/0,
strings as 0 and millisecond timestamps; it is read back through its export API.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.errors import RetryableSinkError
from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.influx import InfluxSink
from gateway.sinks.influx_config import InfluxConfig
from tests.support.victoria import Series, VictoriaMetrics

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_123_456_789
MS0 = T0 // 1_000_000


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unique(prefix: str = "m") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def config_for(server: VictoriaMetrics, **options: Any) -> InfluxConfig:
    token = SecretStr("anything")
    return InfluxConfig(url=server.url, org="plant", bucket="any", token=token, **options)


@asynccontextmanager
async def running(config: InfluxConfig) -> AsyncIterator[InfluxSink]:
    sink = InfluxSink(config, "gw-it")
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


def series_named(found: list[Series]) -> dict[str, Series]:
    return {s.name: s for s in found}


def has(names: set[str]) -> Any:
    return lambda found: names <= {s.name for s in found}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_values_tags_and_timestamps_arrive(victoria: VictoriaMetrics, compress: bool) -> None:
    measurement = unique()
    labels = {"site": "plant1", "line": "line1"}

    def cycle(i: int) -> Batch:
        ns = T0 + i * 100_000_000
        values: dict[str, Value] = {
            "temperature": 61.5 + i,
            "count": 1000 + i,
            "running": i % 2 == 0,
            "model": "SIM-PLC-1",
            "serial": 18000000000000000001,
        }
        readings = [Reading("press-1", t, v, Quality.GOOD, ns, ns) for t, v in values.items()]
        readings.append(Reading("press-1", "broken", None, Quality.BAD, ns, ns, "timeout"))
        readings.append(Reading("press-1", "nan", float("nan"), Quality.GOOD, ns, ns))
        return Batch("press-1", readings, ns, labels, measurement)

    async with running(config_for(victoria, gzip=compress)) as sink:
        await sink.write([cycle(i) for i in range(5)])
    assert sink.written_points == 5
    assert sink.skipped_values == 5

    fields = {"temperature", "count", "running", "model", "serial"}
    names = {f"{measurement}_{f}" for f in fields}
    found = victoria.wait_for_series(f'{{__name__=~"{measurement}_.*"}}', has(names))
    assert {s.name for s in found} == names  # nothing for the bad and the nan readings
    by_name = series_named(found)
    stamps = [MS0 + i * 100 for i in range(5)]
    expected: dict[str, list[float]] = {
        "temperature": [61.5 + i for i in range(5)],
        "count": [1000.0 + i for i in range(5)],
        "running": [1.0, 0.0, 1.0, 0.0, 1.0],
        "model": [0.0] * 5,  # VictoriaMetrics keeps strings as 0
        "serial": [1.8e19] * 5,
    }
    for name, values in expected.items():
        series = by_name[f"{measurement}_{name}"]
        assert series.labels == {"gateway": "gw-it", "device": "press-1", **labels}
        assert series.samples() == dict(zip(stamps, values, strict=True)), name


async def test_devices_and_measurements_are_separate_series(victoria: VictoriaMetrics) -> None:
    default, special = unique(), unique()
    batches = [
        Batch("d1", [Reading("d1", "v", 1, Quality.GOOD, T0, T0)], T0, {"cell": "a"}),
        Batch("d2", [Reading("d2", "v", 2, Quality.GOOD, T0, T0)], T0, {"cell": "b"}),
        Batch("d3", [Reading("d3", "v", 3, Quality.GOOD, T0, T0)], T0, {}, special),
    ]
    async with running(config_for(victoria, measurement=default)) as sink:
        await sink.write(batches)
    found = victoria.wait_for_series(
        f'{{__name__=~"({default}|{special})_v"}}', lambda s: len(s) == 3
    )
    assert {(s.name, s.labels.get("device"), s.labels.get("cell"), s.values[0]) for s in found} == {
        (f"{default}_v", "d1", "a", 1.0),
        (f"{default}_v", "d2", "b", 2.0),
        (f"{special}_v", "d3", None, 3.0),
    }


async def test_names_that_need_escaping_round_trip(victoria: VictoriaMetrics) -> None:
    measurement = unique("machine data,")
    device = "Presse-Süd 東京"
    labels = {
        "site": "plant 1, hall=2",
        "owner": 'Bob "the builder"',
        "path": r"C:\data\line,1",
        "zone": "Zürich",
    }
    tags: dict[str, Value] = {
        "motor speed": 1.0,
        "a,b=c": 2.0,
        'say "hi"': 3.0,
        "温度": 4.0,
        r"back\slash": 5.0,
    }
    readings = [Reading(device, t, v, Quality.GOOD, T0, T0) for t, v in tags.items()]
    async with running(config_for(victoria)) as sink:
        await sink.write([Batch(device, readings, T0, labels, measurement)])
    names = {f"{measurement}_{t}" for t in tags}
    found = victoria.wait_for_series(
        f'{{gateway="gw-it",device="{device}"}}', has(names), timeout=15
    )
    by_name = series_named(found)
    assert set(by_name) == names
    for tag, value in tags.items():
        series = by_name[f"{measurement}_{tag}"]
        assert series.labels == {"gateway": "gw-it", "device": device, **labels}
        assert series.samples() == {MS0: value}


async def test_a_large_write_is_one_request_with_every_value(victoria: VictoriaMetrics) -> None:
    measurement = unique()
    batches = []
    for cycle in range(256):
        ns = T0 + cycle * 1_000_000
        values = [float(cycle * 1000 + t) for t in range(125)]
        readings = [Reading("bulk", f"r{t}", v, Quality.GOOD, ns, ns) for t, v in enumerate(values)]
        batches.append(Batch("bulk", readings, ns, {}, measurement))
    async with running(config_for(victoria)) as sink:
        await sink.write(batches)
    assert sink.written_points == 256
    found = victoria.wait_for_series(
        f'{{__name__=~"{measurement}_.*"}}',
        lambda s: len(s) == 125 and all(len(x.values) == 256 for x in s),
        timeout=20,
    )
    r7 = series_named(found)[f"{measurement}_r7"]
    assert r7.samples() == {MS0 + c: float(c * 1000 + 7) for c in range(256)}


async def test_a_hung_server_times_out_as_retryable(victoria: VictoriaMetrics) -> None:
    async with running(config_for(victoria, timeout=0.5)) as sink:
        batch = Batch("d", [Reading("d", "v", 1, Quality.GOOD, T0, T0)], T0, {}, unique())
        victoria.process.suspend()
        try:
            with pytest.raises(RetryableSinkError, match=r"no answer within 0\.5 s"):
                await sink.write([batch])
        finally:
            victoria.process.resume()
        await sink.write([batch])  # and it writes again once the server answers


async def test_a_stopped_server_is_retryable(tmp_path: Path) -> None:
    server = VictoriaMetrics(tmp_path / "vm").start()
    try:
        async with running(config_for(server)) as sink:
            batch = Batch("d", [Reading("d", "v", 1, Quality.GOOD, T0, T0)], T0, {}, unique())
            await sink.write([batch])
            server.stop()
            with pytest.raises(RetryableSinkError, match="unreachable"):
                await sink.write([batch])
    finally:
        server.stop()
