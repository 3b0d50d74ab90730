"""End to end: simulator processes → ``gateway run`` process → real Mosquitto → a subscriber."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from simulators.modbus.machine import expected_values
from tests.support.gateway import GatewayProcess, example_profile
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.processes import free_port, wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

PREFIX = "it"
GW = "gw-it"
# Ticks of 1000 s: every value is the one of tick 0 for the whole test, so exact checks are sound.
FROZEN = ("--period", "1000")


def telemetry(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/telemetry"


def status(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/status"


def device(device_id: str, port: int, unit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "unit": unit,
        "timeout": 0.5,
        "labels": {"line": "it"},
        **({"profile": "sim-plc"} if "groups" not in extra else {}),
        **extra,
    }


def config(
    broker: Mosquitto, devices: list[dict[str, Any]], interval: float = 0.2
) -> dict[str, Any]:
    profile = example_profile()
    for group in profile["groups"]:
        group["interval"] = interval
    return {
        "gateway": {"id": GW, "log_level": "INFO"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": PREFIX,
                "qos": 1,
            }
        },
        "runtime": {
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
            "retry_min": 0.05,
            "retry_max": 0.5,
            "status_interval": 1,
        },
        "profiles": [profile],
        "devices": devices,
    }


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start()
    yield watcher
    watcher.stop()


def on(topic: str, check: Callable[[Any], bool] = lambda _: True) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic and bool(m.payload) and check(m.json())


def expected_tags(unit: int) -> dict[str, object]:
    """What the example profile's tags must read on a frozen simulator unit (tick 0)."""
    sim = expected_values(unit, 0)
    alarms = sim["alarms"]
    ambient_x10 = sim["ambient_x10"]
    assert isinstance(alarms, int) and isinstance(ambient_x10, int)
    return {
        "state": sim["state"],
        "setpoint": sim["setpoint"],
        "part_count": sim["counter"],
        "temperature": sim["temperature"],
        "temperature_cdab": sim["temperature"],
        "temperature_badc": sim["temperature"],
        "temperature_dcba": sim["temperature"],
        "energy": sim["energy"],
        "offset_total": sim["int64_constant"],
        "serial_total": sim["uint64_constant"],
        "trim": sim["int16_constant"],
        "position": sim["int32_constant"],
        "alarm_overtemp": bool(alarms & 1),
        "alarm_door_open": bool(alarms & 8),
        "plc_heartbeat": bool(alarms & 0x8000),
        "pressure": sim["pressure"],
        "speed": sim["speed"],
        "ambient": ambient_x10 / 10,
        "flow": sim["flow"],
        "run_command": sim["run_command"],
        "door_closed": sim["door_closed"],
        "estop_ok": sim["estop_ok"],
        "part_present": sim["part_present"],
    }


def test_every_tag_arrives_with_the_right_value(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "3", *FROZEN)
    devices = [device(f"plc-{u}", sim.port, unit=u) for u in (1, 2, 3)]
    gateway = run_gateway(config(mosquitto, devices))
    for unit in (1, 2, 3):
        # The process group's message (the model comes in a group of its own).
        message = watch.wait_for(
            on(telemetry(f"plc-{unit}"), lambda p: "part_count" in p["values"]),
            15,
            f"telemetry of plc-{unit}",
        )
        payload = message.json()
        assert "bad" not in payload, payload
        expected = expected_tags(unit)
        process_values = {k: v for k, v in payload["values"].items() if k != "model"}
        assert set(process_values) == set(expected)
        for name, value in expected.items():
            if isinstance(value, float):
                assert process_values[name] == pytest.approx(value, rel=1e-6), name
            else:
                assert process_values[name] == value, name
                assert type(process_values[name]) is type(value), name
        assert abs(payload["ts"] / 1000 - message.received_at) < 5
        model = watch.wait_for(
            on(telemetry(f"plc-{unit}"), lambda p: "model" in p["values"]), 10, "model"
        )
        assert model.json()["values"]["model"] == f"SIM-PLC-{unit}"
        online = watch.wait_for(on(status(f"plc-{unit}"), lambda p: p["state"] == "online"))
        assert online.retain or online.json()["last_error"] is None
    gateway_status = watch.wait_for(on(f"{PREFIX}/{GW}/status"))
    assert gateway_status.json()["state"] == "online"
    assert "Traceback" not in gateway.log()
    # Three unit ids behind one endpoint share one TCP connection.
    links = [
        c
        for c in psutil.Process(gateway.process.pid).net_connections("tcp")
        if c.raddr and c.raddr.port == sim.port
    ]
    assert len(links) == 1, links


def test_rtu_framing_over_tcp(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "2,7", "--framer", "rtu", *FROZEN)
    devices = [
        device("rtu-2", sim.port, unit=2, transport="rtu_over_tcp"),
        device("rtu-7", sim.port, unit=7, transport="rtu_over_tcp"),
    ]
    run_gateway(config(mosquitto, devices))
    for unit in (2, 7):
        payload = watch.wait_for(
            on(telemetry(f"rtu-{unit}"), lambda p: "part_count" in p["values"]), 15
        ).json()
        assert "bad" not in payload
        assert payload["values"]["part_count"] == expected_tags(unit)["part_count"]
        assert payload["values"]["temperature_dcba"] == pytest.approx(
            expected_tags(unit)["temperature"], rel=1e-6
        )


def test_sigterm_publishes_offline_states_and_exits_cleanly(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "1", *FROZEN)
    gateway = run_gateway(config(mosquitto, [device("plc-1", sim.port)]))
    watch.wait_for(on(status("plc-1"), lambda p: p["state"] == "online"), 15)
    assert gateway.stop() == 0
    watch.wait_for(on(status("plc-1"), lambda p: p["state"] == "offline"), 5)
    watch.wait_for(on(f"{PREFIX}/{GW}/status", lambda p: p["state"] == "offline"), 5)
    assert "stopped" in gateway.log()


def test_a_dead_device_is_offline_and_the_others_keep_flowing(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "2", *FROZEN)
    closed_port = free_port()
    # A "device" that accepts the TCP connection and never answers: listening, never accepting.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        devices = [
            device("plc-1", sim.port, unit=1),
            device("unplugged", closed_port),
            device("silent", silent.getsockname()[1]),
            device("plc-2", sim.port, unit=2),
        ]
        run_gateway(config(mosquitto, devices, interval=0.1))
        down = watch.wait_for(on(status("unplugged"), lambda p: p["state"] == "offline"), 15)
        assert "cannot connect" in down.json()["last_error"]
        mute = watch.wait_for(on(status("silent"), lambda p: p["state"] == "offline"), 15)
        assert "no response" in mute.json()["last_error"]
        watch.clear()
        # The healthy devices keep their rate: 10 cycles/s, measured over 2 s of traffic.
        for name in ("plc-1", "plc-2"):
            watch.wait_for_count(telemetry(name), 16, timeout=5)
        first = {n: watch.messages(telemetry(n))[0].json()["ts"] for n in ("plc-1", "plc-2")}
        last = {n: watch.messages(telemetry(n))[-1].json()["ts"] for n in ("plc-1", "plc-2")}
        for name in ("plc-1", "plc-2"):
            cycles = len(watch.messages(telemetry(name)))
            span_s = (last[name] - first[name]) / 1000
            assert cycles - 1 >= 0.7 * span_s / 0.1, (name, cycles, span_s)
        silent_bad = watch.messages(telemetry("silent"))
        assert all("values" in m.json() and not m.json()["values"] for m in silent_bad)
    finally:
        silent.close()


def test_the_device_recovers_when_the_simulator_restarts(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "2", *FROZEN)
    run_gateway(config(mosquitto, [device("plc-1", sim.port, 1), device("plc-2", sim.port, 2)]))
    watch.wait_for(on(status("plc-1"), lambda p: p["state"] == "online"), 15)
    sim.kill()
    for name in ("plc-1", "plc-2"):
        watch.wait_for(on(status(name), lambda p: p["state"] == "offline"), 10, f"{name} down")
    watch.clear()
    sim.start()
    connects = 0
    for name in ("plc-1", "plc-2"):
        back = watch.wait_for(on(status(name), lambda p: p["state"] == "online"), 10)
        connects += back.json()["connects"]
        watch.wait_for(on(telemetry(name), lambda p: "state" in p["values"]), 10)
    # The two units share one link: opened once at start and once after the restart.
    assert connects == 2


def test_publishing_resumes_after_a_broker_restart_without_losing_cycles(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto_factory: Callable[..., Mosquitto],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    # A persistent broker and a persistent watcher session: the broker keeps queueing for the
    # watcher while it is away, so what the gateway sends after the restart is all seen.
    broker = mosquitto_factory(persistent=True)
    sim = launch_sim("--units", "1", *FROZEN)
    interval = 0.1
    gateway = run_gateway(config(broker, [device("plc-1", sim.port)], interval=interval))
    topic = telemetry("plc-1")
    watch = MqttWatch(broker.host, broker.port, topic, session="it-restart").start()
    try:
        watch.wait_for_count(topic, 5, 15)
        broker.stop()
        # The runtime holds what could not be written while the broker is away.
        wait_until(lambda: "holding the data" in gateway.log(), 10, "the sink noticed")
        mark = len(watch.messages(topic))
        broker.start()
        watch.wait_subscribed(15)
        wait_until(lambda: len(watch.messages(topic)) > mark + 20, 20, "publishing resumed")
    finally:
        watch.stop()
    stamps = sorted({m.json()["ts"] for m in watch.messages(topic)})
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Every cycle polled during the outage was delivered afterwards: no hole in the timeline.
    assert max(gaps) < 3 * interval * 1000, gaps


def test_a_refused_request_marks_only_its_tags_bad(
    launch_sim: Callable[..., ModbusSimulator],
    mosquitto: Mosquitto,
    watch: MqttWatch,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "1", *FROZEN)
    groups = [
        {
            "name": "g",
            "interval": 0.2,
            "tags": [
                {"name": "pattern0", "address": 40},
                {"name": "in_the_hole", "address": 55},
                {"name": "scratch0", "address": 60},
                {"name": "speed", "table": "input_register", "address": 2},
            ],
        }
    ]
    devices = [
        # max_gap 30 coalesces 40..60 into one read, which the hole at 50..59 makes fail.
        device("holey", sim.port, groups=groups, max_gap=30),
        device("no-such-unit", sim.port, unit=9, groups=groups),
        device("plc-1", sim.port),
    ]
    run_gateway(config(mosquitto, devices))
    message = watch.wait_for(on(telemetry("holey"), lambda p: "bad" in p), 15)
    payload = message.json()
    assert payload["values"] == {"pattern0": 0x0001, "scratch0": 0, "speed": 1451}
    assert payload["bad"] == {"in_the_hole": "modbus exception 2 (illegal data address)"}
    degraded = watch.wait_for(on(status("holey"), lambda p: p["state"] == "degraded"))
    assert "illegal data address" in degraded.json()["last_error"]
    # The split is remembered: later cycles send 3 requests (40, 55, 60) plus the input one.
    watch.wait_for(on(status("holey"), lambda p: p["polls"] >= 3 and p["requests"] >= 12))

    lost = watch.wait_for(on(telemetry("no-such-unit"), lambda p: "bad" in p), 15).json()
    assert set(lost["bad"]) == {"pattern0", "in_the_hole", "scratch0", "speed"}
    assert all("modbus exception 11" in reason for reason in lost["bad"].values())
    watch.wait_for(on(status("no-such-unit"), lambda p: p["state"] == "offline"))
    watch.wait_for(on(status("plc-1"), lambda p: p["state"] == "online"))
