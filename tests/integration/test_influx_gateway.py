"""End to end: Modbus simulator → ``gateway run`` process → real time-series databases.

VictoriaMetrics takes the v2 path (influxdb-client), InfluxDB 1.6.7 the v1 path (``/write``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

from tests.integration.test_gateway_modbus import expected_tags
from tests.support.gateway import GatewayProcess, example_profile
from tests.support.influxdb1 import InfluxDB1
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator
from tests.support.victoria import Series, VictoriaMetrics

pytestmark = pytest.mark.integration

GW = "gw-influx"
MEASUREMENT = "filling"
# Ticks of 1000 s: every value is the one of tick 0 for the whole test, so exact checks are sound.
FROZEN = ("--period", "1000")


def device(device_id: str, port: int, unit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "unit": unit,
        "timeout": 0.5,
        "profile": "sim-plc",
        "labels": {"line": "it", "cell": "filling 1"},
        **extra,
    }


def config(influxdb: dict[str, Any], devices: list[dict[str, Any]], interval: float) -> Any:
    profile = example_profile()
    profile["measurement"] = MEASUREMENT
    for group in profile["groups"]:
        group["interval"] = interval
    return {
        "gateway": {"id": GW, "log_level": "INFO"},
        "sinks": {"influxdb": {"type": "influxdb", **influxdb}},
        "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "retry_min": 0.05,
                    "retry_max": 0.5},
        "profiles": [profile],
        "devices": devices,
    }  # fmt: skip


class Store(Protocol):
    """A database the gateway writes to, as the restart test sees it."""

    def section(self) -> dict[str, Any]: ...

    def stamps_ms(self, device_id: str) -> list[int]: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


class VictoriaStore:
    def __init__(self, workdir: Path) -> None:
        self.server = VictoriaMetrics(workdir)

    def section(self) -> dict[str, Any]:
        return {"url": self.server.url, "org": "plant", "bucket": "telemetry", "token": "x"}

    def stamps_ms(self, device_id: str) -> list[int]:
        self.server.flush()
        found = self.server.export(f'{{__name__="{MEASUREMENT}_state",device="{device_id}"}}')
        return sorted(t for series in found for t in series.timestamps)

    def start(self) -> object:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()


class InfluxDB1Store:
    def __init__(self, workdir: Path) -> None:
        self.server = InfluxDB1(workdir)
        self.database = f"db_{uuid.uuid4().hex[:8]}"

    def section(self) -> dict[str, Any]:
        return {"api": "v1", "url": self.server.url, "database": self.database}

    def stamps_ms(self, device_id: str) -> list[int]:
        statement = f'SELECT "state" FROM "{MEASUREMENT}" WHERE "device"=\'{device_id}\''
        return [row["time"] // 1_000_000 for row in self.server.rows(statement, self.database)]

    def start(self) -> object:
        self.server.start()
        self.server.query(f'CREATE DATABASE "{self.database}"')  # a no-op once it exists
        return self.server

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(params=["victoria-metrics", "influxdb-1.6"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    workdir = tmp_path / str(request.param)
    chosen: Store = (
        VictoriaStore(workdir) if request.param == "victoria-metrics" else (InfluxDB1Store(workdir))
    )
    chosen.start()
    try:
        yield chosen
    finally:
        chosen.stop()


def number(value: object) -> float:
    """A tag's expected value as VictoriaMetrics keeps it (booleans as 1/0)."""
    assert isinstance(value, int | float), value
    return float(value)


def all_of(names: set[str]) -> Callable[[list[Series]], bool]:
    return lambda found: names <= {series.name for series in found}


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """Requested before ``run_gateway``, so it stops after the gateway's final flush."""
    server = VictoriaMetrics(tmp_path / "victoria").start()
    try:
        yield server
    finally:
        server.stop()


def test_every_tag_lands_in_victoriametrics(
    victoria: VictoriaMetrics,
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "2", *FROZEN)
    devices = [device("plc-1", sim.port, 1), device("plc-2", sim.port, 2, measurement="cap")]
    section = {"url": victoria.url, "org": "plant", "bucket": "telemetry", "token": "x"}
    gateway = run_gateway(config(section, devices, interval=0.2))
    for device_id, unit, measurement in (("plc-1", 1, MEASUREMENT), ("plc-2", 2, "cap")):
        expected = {tag: number(v) for tag, v in expected_tags(unit).items()}
        expected["model"] = 0.0  # VictoriaMetrics keeps strings as 0
        names = {f"{measurement}_{tag}" for tag in expected}
        found = victoria.wait_for_series(f'{{device="{device_id}"}}', all_of(names), 20)
        assert {s.name for s in found} == names
        now_ms = time.time() * 1000
        for series in found:
            tag = series.name.removeprefix(f"{measurement}_")
            assert series.labels == {
                "gateway": GW, "device": device_id, "line": "it", "cell": "filling 1"
            }  # fmt: skip
            assert all(abs(now_ms - t) < 60_000 for t in series.timestamps)
            # float32 tags, and VictoriaMetrics keeps about 12 significant digits
            assert series.values[-1] == pytest.approx(expected[tag], rel=1e-6), tag
    assert "Traceback" not in gateway.log()
    assert "sinks: influxdb (influxdb)" in gateway.log()


def served_input_reads(record: Path, since: int) -> int:
    """Input-register reads the simulator served after byte offset ``since``: one per cycle."""
    with record.open("rb") as file:
        file.seek(since)
        lines = file.read().splitlines()
    return sum(1 for line in lines if line.endswith(b"}") and orjson.loads(line)["fc"] == 4)


def test_writing_resumes_after_a_database_restart_without_losing_points(
    tmp_path: Path,
    store: Store,
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    record = tmp_path / "served.jsonl"
    sim = launch_sim("--units", "1", "--record", str(record), *FROZEN)
    interval = 0.1
    gateway = run_gateway(config(store.section(), [device("plc-1", sim.port)], interval))
    wait_until(lambda: len(store.stamps_ms("plc-1")) >= 5, 20, "first points written")

    store.stop()
    down_ms = time.time() * 1000
    mark = record.stat().st_size
    # The runtime holds what cannot be written while the database is away...
    wait_until(lambda: "holding the data" in gateway.log(), 10, "the sink noticed the outage")
    # ...for at least 20 poll cycles.
    wait_until(lambda: served_input_reads(record, mark) >= 20, 10, "20 cycles polled")
    store.start()
    up_ms = time.time() * 1000

    def caught_up() -> list[int] | None:
        stamps = store.stamps_ms("plc-1")
        return stamps if stamps and stamps[-1] > up_ms + 1000 else None

    stamps = wait_until(caught_up, 30, "writing resumed")
    assert "writing again" in gateway.log()
    during = [t for t in stamps if down_ms <= t <= up_ms]
    assert len(during) >= 15, (len(during), during)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Every cycle polled during the outage was written afterwards: no hole in the timeline.
    assert max(gaps) < 3 * interval * 1000, gaps
    assert "Traceback" not in gateway.log()
