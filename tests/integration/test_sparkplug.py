"""The gateway as a Sparkplug B edge node on a live run: config/sparkplug-example.yaml over the
real simulators and a real Mosquitto, checked by a host written from the specification
(tests/support/sparkplug_host.py) that records every breach of the session rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pymodbus.client import ModbusTcpClient

from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator
from tests.support.sparkplug_host import SparkplugHost

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "sparkplug-example.yaml"
GROUP, NODE = "Plant1", "plant1-gw"
FILLERS = ("filler-1", "filler-2")


@pytest.fixture
def modbus_sim(tmp_path: Path) -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator(tmp_path / "modbus-sim", "--units", "2").start()
    yield sim
    sim.stop()


@pytest.fixture
def opcua_sim(tmp_path: Path) -> Iterator[OpcUaSimulator]:
    sim = OpcUaSimulator(tmp_path / "opcua-sim").start()
    yield sim
    sim.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Gateways of the example config; each stopped by PID afterwards."""
    started: list[GatewayProcess] = []

    def start(
        broker: Mosquitto,
        sim: ModbusSimulator,
        opcua: OpcUaSimulator | None = None,
        **sink: Any,
    ) -> GatewayProcess:
        config = yaml.safe_load(EXAMPLE.read_text())
        config["gateway"]["data_dir"] = str(tmp_path / "gateway-data")  # kept across restarts
        config["sinks"]["spb"].update({"reconnect_min": 0.2, "reconnect_max": 1.0, **sink})
        env = {"MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port), "SIM_PORT": str(sim.port)}
        if opcua is None:
            config["devices"] = [d for d in config["devices"] if d["type"] != "opcua"]
        else:
            env["OPCUA_SIM_PORT"] = str(opcua.port)
        gateway = GatewayProcess(tmp_path / f"gateway-{len(started)}", config, env=env)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


def bdseq(received: Any) -> int:
    value = received.payload.metric("bdSeq").value
    assert isinstance(value, int)
    return value


def data_count(host: SparkplugHost, device: str) -> int:
    return sum(1 for m in host.received if m.kind == "DDATA" and m.device == device)


def test_a_live_run_follows_the_session_rules_rebirths_and_takes_dcmd(
    mosquitto: Mosquitto,
    modbus_sim: ModbusSimulator,
    opcua_sim: OpcUaSimulator,
    gateways: Callable[..., GatewayProcess],
) -> None:
    devices = (*FILLERS, "line1-opcua")
    with SparkplugHost(mosquitto.host, mosquitto.port, GROUP) as host:
        gateway = gateways(mosquitto, modbus_sim, opcua_sim)
        host.wait_for(
            lambda: all(data_count(host, d) >= 3 for d in devices), 30, "DDATA of every device"
        )
        node = host.node_state(NODE)
        assert node.online and node.bdseq == 0  # the first connection of a new data dir
        birth = host.wait_message("NBIRTH", NODE)
        assert birth.payload is not None and birth.payload.seq == 0
        assert birth.payload.metric("Properties/Gateway version") is not None
        filler = node.devices["filler-1"]
        assert filler.online
        assert filler.metrics["setpoint"][1] == 2  # Int16, from the tag's data_type
        assert filler.metrics["temperature"][1] == 9  # Float
        assert filler.metrics["ambient"][1] == 10  # a scaled int16 is a Double
        assert filler.metrics["door_closed"][1] == 11  # Boolean
        assert filler.metrics["model"][1] == 12  # String
        assert isinstance(node.devices["line1-opcua"].values["speed"], float)
        aliases = {d: dict(node.devices[d].metrics) for d in devices}

        # NCMD Node Control/Rebirth: NBIRTH again (seq 0, same bdSeq), then every DBIRTH.
        mark = len(host.received)
        host.send_rebirth(NODE)
        rebirth = host.wait_message("NBIRTH", NODE, after=mark)
        assert rebirth.payload is not None and rebirth.payload.seq == 0
        assert bdseq(rebirth) == 0
        for device in devices:
            host.wait_message("DBIRTH", NODE, device, after=mark)
        again = host.node_state(NODE)
        assert {d: dict(again.devices[d].metrics) for d in devices} == aliases

        # DCMD by alias: written through the write-back path, then a DDATA of the new value.
        mark = len(host.received)
        host.send_dcmd(NODE, "filler-1", {"setpoint": -321}, by_alias=True)
        host.wait_for(
            lambda: host.node_state(NODE).devices["filler-1"].values.get("setpoint") == -321,
            10,
            "the written setpoint in a DDATA",
        )
        with ModbusTcpClient(modbus_sim.host, port=modbus_sim.port) as client:
            register = client.read_holding_registers(1, count=1, device_id=1).registers[0]
        assert register == (-321) & 0xFFFF  # the PLC holds it

        # A DCMD the policy refuses changes nothing and is audited like an API write.
        host.send_dcmd(NODE, "filler-1", {"setpoint": 5000})  # max is 1000
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        def audited() -> list[dict[str, Any]]:
            answer = httpx.get(f"{gateway.api_url}/api/v1/audit", headers=headers, timeout=5)
            answer.raise_for_status()
            rows: list[dict[str, Any]] = answer.json()["items"]
            return [r for r in rows if str(r.get("who", "")).startswith("sparkplug:")]

        wait_until(lambda: len(audited()) >= 2, 10, "both DCMDs in the audit")
        results = sorted(r["result"] for r in audited())
        assert results == ["refused", "written"], audited()
        assert host.node_state(NODE).devices["filler-1"].values["setpoint"] == -321
        assert host.violations == []


def test_will_on_a_hang_next_bdseq_history_after_a_broker_outage_and_across_restarts(
    mosquitto_factory: Callable[..., Mosquitto],
    modbus_sim: ModbusSimulator,
    gateways: Callable[..., GatewayProcess],
) -> None:
    # The broker keeps the host's session (QoS 0 included) across its restart: the host misses
    # nothing of what the gateway publishes when it reconnects.
    broker = mosquitto_factory(persistent=True, extra_config="queue_qos0_messages true")
    with SparkplugHost(broker.host, broker.port, GROUP, persistent=True) as host:
        gateway = gateways(broker, modbus_sim, keepalive=5)
        host.wait_for(lambda: all(data_count(host, d) >= 2 for d in FILLERS), 20, "DDATA")
        first = host.node_state(NODE).bdseq
        assert first is not None

        # The gateway hangs: the broker publishes its will, NDEATH with the same bdSeq.
        mark = len(host.received)
        gateway.process.suspend()
        try:
            death = host.wait_message("NDEATH", NODE, after=mark, timeout=15)
        finally:
            gateway.process.resume()
        assert death.qos == 1 and not death.retain and bdseq(death) == first
        assert not host.node_state(NODE).online
        rebirth = host.wait_message("NBIRTH", NODE, after=mark, timeout=15)
        assert bdseq(rebirth) == first + 1

        # The broker goes away for a while: afterwards the next bdSeq, and what was polled
        # meanwhile arrives after the births, as history.
        host.wait_for(lambda: data_count(host, "filler-1") >= 2 + data_count_at(host, mark), 10)
        mark = len(host.received)
        broker.stop()
        wait_until(lambda: _log_has(gateway, "lost the connection"), 10, "the gateway noticed")
        _polls_go_on(gateway, "filler-1", 3)
        broker.start()
        rebirth = host.wait_message("NBIRTH", NODE, after=mark, timeout=20)
        assert bdseq(rebirth) == first + 2

        host.wait_for(lambda: len(cycles_in_history(host)) >= 3, 20, "the outage as history")

        # A restart of the gateway: NDEATH of its own at the stop, then the next bdSeq.
        mark = len(host.received)
        gateway.stop()
        death = host.wait_message("NDEATH", NODE, after=mark, timeout=10)
        assert bdseq(death) == first + 2
        gateways(broker, modbus_sim, keepalive=5)
        rebirth = host.wait_message("NBIRTH", NODE, after=mark, timeout=20)
        assert bdseq(rebirth) == first + 3
        host.wait_for(lambda: data_count(host, "filler-1") > data_count_at(host, mark), 10)
        assert host.violations == []


def test_births_wait_for_the_primary_host_and_its_absence_is_made_up_as_history(
    mosquitto: Mosquitto,
    modbus_sim: ModbusSimulator,
    gateways: Callable[..., GatewayProcess],
) -> None:
    with SparkplugHost(mosquitto.host, mosquitto.port, GROUP, host_id="IamHost") as host:
        gateway = gateways(mosquitto, modbus_sim, primary_host_id="IamHost")
        wait_until(
            lambda: _log_has(gateway, "waiting for primary host IamHost"), 20, "the gateway waits"
        )
        wait_until(lambda: _log_has(gateway, "device filler-2: online"), 20, "polling")
        assert [m for m in host.received if m.node == NODE] == []  # nothing before the host

        host.publish_state(True)
        host.wait_for(lambda: all(data_count(host, d) >= 2 for d in FILLERS), 20, "DDATA")
        first = host.node_state(NODE).bdseq
        assert first is not None

        mark = len(host.received)
        host.publish_state(False)
        death = host.wait_message("NDEATH", NODE, after=mark, timeout=10)
        assert bdseq(death) == first
        _polls_go_on(gateway, "filler-1", 3)  # kept by the outbox meanwhile
        after_death = host.received[host.received.index(death) + 1 :]
        assert [m.kind for m in after_death if m.node == NODE] == []  # silent until the host

        host.publish_state(True)
        rebirth = host.wait_message("NBIRTH", NODE, after=mark, timeout=15)
        assert bdseq(rebirth) > first

        host.wait_for(lambda: len(cycles_in_history(host)) >= 3, 20, "the absence as history")
        assert death.payload is not None and death.payload.timestamp is not None
        assert rebirth.payload is not None and rebirth.payload.timestamp is not None
        cycles = cycles_in_history(host)
        # Polled while the host was away (from about the NDEATH on), published afterwards.
        assert death.payload.timestamp - 1500 <= min(cycles) <= max(cycles)
        assert max(cycles) <= rebirth.payload.timestamp
        assert host.violations == []


def cycles_in_history(host: SparkplugHost) -> list[int]:
    """The distinct timestamps (ms) of filler-1's historical values; each metric's history
    must have arrived oldest first."""
    history = host.node_state(NODE).devices["filler-1"].history
    everything: set[int] = set()
    for points in history.values():
        stamps = [stamp for stamp, _ in points if stamp is not None]
        assert len(stamps) == len(points), "a historical value without its timestamp"
        assert stamps == sorted(stamps), f"history out of order: {stamps}"
        everything.update(stamps)
    return sorted(everything)


def data_count_at(host: SparkplugHost, mark: int) -> int:
    return sum(1 for m in host.received[:mark] if m.kind == "DDATA" and m.device == "filler-1")


def _log_has(gateway: GatewayProcess, text: str) -> bool:
    return text in gateway.log()


def _polls_go_on(gateway: GatewayProcess, device: str, cycles: int) -> None:
    """Wait until the device's ``process`` group was polled ``cycles`` more times (while the
    host hears nothing). ``polls`` counts the cycles of both its groups: its ``identity`` group
    (every 10 s, on a phase of its own) may poll once in the wait, so one more is waited for."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"{gateway.api_url}/api/v1/devices/{device}/status"

    def polls() -> int:
        answer = httpx.get(url, headers=headers, timeout=5)
        answer.raise_for_status()
        count: int = answer.json()["polls"]
        return count

    start = polls()
    wait_until(lambda: polls() >= start + cycles + 1, 20, f"{cycles} more cycles of {device}")
