"""The S7 connector against the real simulator (python-snap7's server in its own process):
every type and area, strings and bits, coalescing counted by the simulator, the split of a
refused range, writes checked by an independent client, and a PLC restart through
``gateway run`` with config/s7-example.yaml."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from snap7.async_client import AsyncClient

from connectors.s7.config import S7DeviceConfig
from connectors.s7.connector import S7Connector
from gateway.protocols import TagWrite
from gateway.reading import Quality, Reading, Value
from simulators.s7.plc import snapshot
from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import wait_until
from tests.support.s7 import S7Simulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "s7-example.yaml"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[S7Simulator]:
    simulator = S7Simulator(tmp_path / "s7-sim").start()
    yield simulator
    simulator.stop()


def example_tags() -> list[dict[str, Any]]:
    """Every tag of the shipped example's profile."""
    document = yaml.safe_load(EXAMPLE.read_text())
    profile = document["profiles"][0]
    return [tag for group in profile["groups"] for tag in group["tags"]]


def device(port: int, tags: list[dict[str, Any]], **options: Any) -> S7DeviceConfig:
    groups = [{"name": "all", "interval": 0.2, "tags": tags}]
    return S7DeviceConfig.model_validate(
        {"id": "plc", "type": "s7", "host": "127.0.0.1", "port": port, "groups": groups, **options}
    )


@pytest.fixture
async def connector(sim: S7Simulator) -> AsyncIterator[S7Connector]:
    config = device(sim.port, example_tags())
    assert config.groups is not None
    plc = S7Connector(config, config.groups)
    await plc.start()
    yield plc
    await plc.stop()


async def one_cycle(plc: S7Connector) -> dict[str, Reading]:
    cycle = await anext(plc.cycles())
    return {reading.tag: reading for reading in cycle.readings}


async def test_every_type_and_area_reads_right_in_one_request(
    connector: S7Connector, sim: S7Simulator
) -> None:
    before = len(sim.requests())
    readings = await one_cycle(connector)
    assert all(r.quality is Quality.GOOD for r in readings.values()), readings
    values = {name: r.value for name, r in readings.items()}
    # Values that do not move (or move by tick) against the simulator's own model.
    now = snapshot(0)
    exact = {
        "door_open": True,
        "setpoint": now.setpoint,
        "int16_constant": -1234,
        "word_constant": 0xBEEF,
        "int32_constant": -123456789,
        "uint32_constant": 4_000_000_000,
        "int8_constant": -12,
        "name": "SIM-S7-1",
        "code": "ABCDEFGH",
        "marker_byte": 0x5A,
        "input_start": True,
        "input_stop": False,
        "input_word": 1234,
        "output_lamp": True,
        "output_word": 4321,
    }
    assert {name: values[name] for name in exact} == exact
    tick = values["counter"]
    assert isinstance(tick, int) and 1000 <= tick < 1000 + 10_000  # PLC 1: tick + 1000
    assert values["state"] in (0, 1, 2, 3) and isinstance(values["running"], bool)
    temperature, energy, sine = values["temperature"], values["energy"], values["marker_sine"]
    assert isinstance(temperature, float) and 56.0 <= temperature <= 66.0
    assert isinstance(energy, float) and math.isclose(energy, 12346.678 + (tick - 1000) * 0.001)
    assert isinstance(sine, float) and -100.0 <= sine <= 100.0  # scale 100
    assert isinstance(values["marker_counter"], int) and isinstance(values["heartbeat"], bool)
    # 24 tags in DB1, the markers, the inputs and the outputs: one multi-variable read of
    # four blocks (the string of the 10 s group is in the same group here).
    served = sim.requests()[before:]
    assert len(served) == 1, served
    variables: list[list[int]] = served[0]["read"]  # type: ignore[assignment]
    assert sorted((area, db) for area, db, *_ in variables) == [
        (0x81, 0),
        (0x82, 0),
        (0x83, 0),
        (0x84, 1),
    ]


@pytest.mark.parametrize(
    ("pdu", "expected"),
    [(240, [18, 18, 4]), (480, [20, 20])],
    ids=["pdu-240:addresses-fill-the-request", "pdu-480:20-variables-a-request"],
)
async def test_coalescing_respects_the_pdu_and_the_item_limit(
    sim: S7Simulator, pdu: int, expected: list[int]
) -> None:
    # 40 tags in 40 places of DB1 and DB2 that may not be joined (max_gap 0): 40 variables.
    # In a 240-byte PDU a request holds 18 addresses (12 bytes each after 14 of header);
    # in 480 bytes the limit is max_items, 20.
    places = [(1, 4 * i) for i in range(24)] + [(2, 4 * i) for i in range(16)]
    tags = [{"name": f"w{db}_{at}", "address": f"DB{db}.DBW{at}"} for db, at in places]
    config = device(sim.port, tags, max_gap=0, pdu_size=pdu, max_items=20)
    assert config.groups is not None
    plc = S7Connector(config, config.groups)
    await plc.start()
    try:
        before = len(sim.requests())
        readings = await one_cycle(plc)
    finally:
        await plc.stop()
    assert all(r.quality is Quality.GOOD for r in readings.values())
    served = [r["read"] for r in sim.requests()[before:]]
    assert [len(items) for items in served] == expected  # type: ignore[arg-type]


async def test_a_refused_range_is_split_once_and_remembered(sim: S7Simulator) -> None:
    # DB1 has 100 bytes: with max_gap 200, DBW2 and DBW150 make one block 2..151, which the
    # PLC refuses; from then on the two are read on their own, and only DBW150 is bad.
    tags = [
        {"name": "setpoint", "address": "DB1.DBW2", "data_type": "int16"},
        {"name": "beyond", "address": "DB1.DBW150"},
    ]
    config = device(sim.port, tags, max_gap=200)
    assert config.groups is not None
    plc = S7Connector(config, config.groups)
    await plc.start()
    try:
        cycles = plc.cycles()
        first = await anext(cycles)
        before = len(sim.requests())
        second = await anext(cycles)
    finally:
        await plc.stop()
    for cycle in (first, second):
        by_tag = {r.tag: r for r in cycle.readings}
        assert by_tag["setpoint"].value == 501 and by_tag["setpoint"].quality is Quality.GOOD
        assert by_tag["beyond"].quality is Quality.BAD
        assert "0x05" in (by_tag["beyond"].reason or "")
    served = sim.requests()[before:]
    assert [len(r["read"]) for r in served] == [2]  # type: ignore[arg-type]  # no whole-block try


async def test_writes_round_trip_through_an_independent_client(sim: S7Simulator) -> None:
    config = device(
        sim.port,
        [
            {"name": "real", "address": "DB2.DBD0", "data_type": "float32", "writable": True},
            {"name": "lreal", "address": "DB2.DBD4", "data_type": "float64", "writable": True},
            {"name": "dint", "address": "DB2.DBD12", "data_type": "int32", "writable": True},
            {"name": "text", "address": "DB2.DBB16", "data_type": "string", "length": 10,
             "writable": True},
            {"name": "bit5", "address": "DB2.DBX30.5", "writable": True},
            {"name": "scaled", "address": "DB2.DBW32", "data_type": "int16", "scale": 0.1,
             "writable": True},
        ],
    )  # fmt: skip
    assert config.groups is not None
    plc = S7Connector(config, config.groups)
    await plc.start()
    tags = {tag.name: tag for tag in config.groups[0].tags}
    wanted: dict[str, Value] = {
        "real": 12.5, "lreal": -98765.4321, "dint": -2_000_000_001, "text": "Hello S7",
        "bit5": True, "scaled": -12.3,
    }  # fmt: skip
    try:
        outcomes = await plc.write([TagWrite(tags[n], v) for n, v in wanted.items()], True)
        refused = await plc.write([TagWrite(tags["dint"], 2**31)], True)
    finally:
        await plc.stop()
    assert [(o.tag, o.written, o.read_back) for o in outcomes] == [
        (name, True, value) for name, value in wanted.items()
    ]
    assert refused[0].written is False and refused[0].applied is False
    assert "out of the range of a int32" in (refused[0].error or "")

    independent = AsyncClient()
    await independent.connect("127.0.0.1", 0, 1, sim.port)
    try:
        db2 = await independent.db_read(2, 0, 34)
    finally:
        await independent.disconnect()
    assert db2[16:18] == bytes((10, 8)) and db2[18:26] == b"Hello S7"  # STRING header
    assert db2[30] == 0b0010_0000  # only bit 5 of the byte changed
    assert int.from_bytes(db2[32:34], "big", signed=True) == -123
    assert any("write" in r for r in sim.requests())


def test_the_example_runs_and_a_plc_restart_recovers_by_itself(
    tmp_path: Path, mosquitto: Mosquitto, sim: S7Simulator
) -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["gateway"]["data_dir"] = str(tmp_path / "data")
    env = {"MQTT_PORT": str(mosquitto.port), "S7_SIM_PORT": str(sim.port)}
    topic = "factory/plant1-gw/press-s7/telemetry"
    telemetry = MqttWatch(mosquitto.host, mosquitto.port, topic).start()
    gateway = GatewayProcess(tmp_path / "gateway", config, env=env).start()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        api = gateway.wait_api()

        def state() -> str:
            answer = httpx.get(f"{api}/api/v1/devices/press-s7/status", headers=headers, timeout=5)
            answer.raise_for_status()
            current: str = answer.json()["state"]
            return current

        process = telemetry.wait_for(lambda m: "counter" in m.json().get("values", {}), 20)
        assert process.json()["values"]["code"] == "ABCDEFGH"
        # The 10 s group's string, reported by exception (heartbeat 60 s): its first report.
        identity = telemetry.wait_for(lambda m: "name" in m.json().get("values", {}), 20)
        assert identity.json()["values"]["name"] == "SIM-S7-1"
        sim.kill()
        wait_until(lambda: state() == "offline", 20, "the device offline")
        sim.start()
        wait_until(lambda: state() == "online", 30, "the device back online")
        telemetry.clear()
        telemetry.wait_for(lambda m: "counter" in m.json().get("values", {}), 20)
    finally:
        gateway.stop()
        telemetry.stop()
