"""Modbus RTU on a serial line, for real: the gateway and the simulator on the two ends of a
``socat`` pseudo-terminal pair at 19,200 baud (the simulator answers after the time the frames
take on such a line), several units on one line, one master; and RTU over TCP to a
serial-to-Ethernet converter in the same gateway."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_gateway_modbus import FROZEN, config, expected_tags, on, status
from tests.integration.test_gateway_modbus import telemetry as telemetry_topic
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.processes import wait_until
from tests.support.serial_line import SerialPair, SerialSimulator, socat_available
from tests.support.simulator import ModbusSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not socat_available(), reason="socat (Debian package) is not installed"),
]

BAUD = "19200"
SILENT_TIMEOUT = 0.4


@pytest.fixture
def line(tmp_path: Path) -> Iterator[SerialPair]:
    pair = SerialPair(tmp_path / "line").start()
    yield pair
    pair.stop()


@pytest.fixture
def serial_sim(tmp_path: Path, line: SerialPair) -> Iterator[Callable[..., SerialSimulator]]:
    started: list[SerialSimulator] = []

    def launch(*args: str) -> SerialSimulator:
        sim = SerialSimulator(tmp_path / "serial-sim", line.device, "--baudrate", BAUD, *args)
        started.append(sim)
        return sim.start()

    yield launch
    for sim in started:
        sim.stop()


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, "it/#").start()
    yield watcher
    watcher.stop()


def serial_device(device_id: str, line: SerialPair, unit: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "modbus",
        "transport": "serial",
        "serial_port": line.gateway,
        "baudrate": int(BAUD),
        "unit": unit,
        "timeout": 0.5,
        "profile": "sim-plc",
        **extra,
    }


def line_of(message: Received) -> dict[str, Any]:
    line: dict[str, Any] = message.json()["line"]
    return line


def assert_exact(payload: dict[str, Any], unit: int) -> None:
    assert "bad" not in payload, payload
    values = {k: v for k, v in payload["values"].items() if k != "model"}
    expected = expected_tags(unit)
    assert set(values) == set(expected)
    for name, value in expected.items():
        if isinstance(value, float):
            assert values[name] == pytest.approx(value, rel=1e-6), name
        else:
            assert values[name] == value, name


def test_three_units_on_one_line_and_a_silent_one_costs_only_its_timeout(
    line: SerialPair,
    serial_sim: Callable[..., SerialSimulator],
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    serial_sim("--units", "3", *FROZEN)
    converter = launch_sim("--units", "4", "--framer", "rtu", *FROZEN)
    devices = [serial_device(f"rtu-{u}", line, u) for u in (1, 2, 3)]
    devices.append(serial_device("rtu-9", line, 9, timeout=SILENT_TIMEOUT))
    devices.append(
        {
            "id": "converter-4",
            "type": "modbus",
            "transport": "rtu_over_tcp",
            "host": converter.host,
            "port": converter.port,
            "unit": 4,
            "timeout": 0.5,
            "profile": "sim-plc",
        }
    )
    run_gateway(config(mosquitto, devices, interval=1.0))

    for unit in (1, 2, 3):
        message = watch.wait_for(
            on(telemetry_topic(f"rtu-{unit}"), lambda p: "state" in p["values"]), 20
        )
        assert_exact(message.json(), unit)
    converted = on(telemetry_topic("converter-4"), lambda p: "state" in p["values"])
    assert_exact(watch.wait_for(converted, 20).json(), 4)

    silent = watch.wait_for(on(status("rtu-9"), lambda p: p["state"] == "offline"), 20)
    assert f"no response within {SILENT_TIMEOUT:g} s" in silent.json()["last_error"]

    # Polled every second, each answering unit keeps its interval: the silent one adds its one
    # timeout per cycle to the line, not one per request.
    since = time.time()

    def arrivals() -> dict[int, list[float]] | None:
        times = {
            unit: [
                m.received_at
                for m in watch.messages(telemetry_topic(f"rtu-{unit}"))
                if m.received_at >= since
            ]
            for unit in (1, 2, 3)
        }
        return times if all(len(t) >= 6 for t in times.values()) else None

    for unit, times in wait_until(arrivals, 30, "six polls of each unit").items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 1.0 + SILENT_TIMEOUT + 0.3, (
            unit,
            gaps,
            str(watch.payloads(status(f"rtu-{unit}"))[-1]),
        )

    report = line_of(watch.wait_for(on(status("rtu-1"), lambda p: "line" in p), 15))
    assert report["endpoint"] == f"serial://{line.gateway}"
    assert report["baudrate"] == 19200
    assert report["units"] == 4
    assert 0 < report["demand_pct"] < 100
    assert report["usage_pct"] > report["demand_pct"] / 2
    assert report["timeouts"] >= 1
    assert report["oversubscribed"] is False
    converter_line = line_of(watch.wait_for(on(status("converter-4"), lambda p: "line" in p)))
    assert converter_line["endpoint"] == f"rtu_over_tcp://{converter.host}:{converter.port}"


def test_crc_errors_and_cut_frames_are_counted_and_the_line_recovers(
    line: SerialPair,
    serial_sim: Callable[..., SerialSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    serial_sim(
        "--units", "2", "--garble-every", "6", "--truncate-every", "9", "--fault-units", "2,",
        *FROZEN,
    )  # fmt: skip
    devices = [serial_device("rtu-1", line, 1), serial_device("rtu-2", line, 2, timeout=0.3)]
    run_gateway(config(mosquitto, devices, interval=0.5))

    def faults_seen(payload: dict[str, Any]) -> bool:
        line_report: dict[str, int] = payload.get("line", {})
        return line_report.get("crc_errors", 0) >= 2 and line_report.get("partial_frames", 0) >= 1

    report = watch.wait_for(on(status("rtu-2"), faults_seen), 40, "CRC errors and cut frames")
    assert report.json()["request_errors"] >= 3
    # Between the faults the faulty unit's values come through whole, and the other unit's
    # are never touched.
    whole = on(telemetry_topic("rtu-2"), lambda p: "bad" not in p and "state" in p["values"])
    good = watch.wait_for(
        lambda m: m.received_at > report.received_at and whole(m),
        20,
        "a whole answer from the faulty unit after the faults",
    )
    assert_exact(good.json(), 2)
    assert not [p for p in watch.payloads(telemetry_topic("rtu-1")) if "bad" in p]
    reasons = {
        reason
        for p in watch.payloads(telemetry_topic("rtu-2"))
        if "bad" in p
        for reason in p["bad"].values()
    }
    assert any(reason.startswith("CRC error") for reason in reasons), reasons
    assert any(reason.startswith("partial frame") for reason in reasons), reasons


def test_the_port_unplugged_and_plugged_back(
    line: SerialPair,
    serial_sim: Callable[..., SerialSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    serial_sim("--units", "2", *FROZEN)
    devices = [serial_device(f"rtu-{u}", line, u) for u in (1, 2)]
    gateway = run_gateway(config(mosquitto, devices, interval=0.5))
    for unit in (1, 2):
        watch.wait_for(on(status(f"rtu-{unit}"), lambda p: p["state"] == "online"), 20)

    line.unplug()
    for unit in (1, 2):
        down = watch.wait_for(on(status(f"rtu-{unit}"), lambda p: p["state"] == "offline"), 20)
        assert line.gateway in down.json()["last_error"]

    since = time.time()
    line.start()
    for unit in (1, 2):
        online = on(status(f"rtu-{unit}"), lambda p: p["state"] == "online")

        def back_online(m: Received, online: Callable[[Received], bool] = online) -> bool:
            return m.received_at >= since and online(m)

        back = watch.wait_for(back_online, 30, f"rtu-{unit} back online")
        assert line_of(back)["opened"] >= 2
    whole = on(telemetry_topic("rtu-1"), lambda p: "bad" not in p and "state" in p["values"])
    fresh = watch.wait_for(lambda m: m.received_at >= since and whole(m), 20)
    assert_exact(fresh.json(), 1)
    assert "Traceback" not in gateway.log()
