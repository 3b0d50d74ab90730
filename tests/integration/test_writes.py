"""Write-back against the real simulators: values set through the API and checked by an
independent client, bits, refusals, and the audit of every attempt."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua.client.client import Client
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pymodbus.client import ModbusTcpClient

from connectors.modbus.config import ByteOrder, DataType, ModbusTag
from connectors.modbus.decode import decode_value
from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import free_port, wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "test-operator-token-0123456789"
SCRATCH = 60
"""The simulator's writable scratch registers: 60..69."""
TYPES = {
    DataType.INT16: -12345,
    DataType.UINT16: 54321,
    DataType.INT32: -2_000_000_001,
    DataType.UINT32: 4_000_000_001,
    DataType.INT64: -(2**62) - 7,
    DataType.UINT64: 18_446_744_073_709_551_615,
    DataType.FLOAT32: 1234.5,
    DataType.FLOAT64: -98765.4321,
}


def scratch_tags() -> list[dict[str, Any]]:
    """One tag per type and byte order, all over the same scratch registers (so each write is
    read back through its own decoding only)."""
    tags: list[dict[str, Any]] = [
        {"name": f"{t.value}_{o.value}", "address": SCRATCH, "data_type": t.value,
         "byte_order": o.value, "writable": True}
        for t in TYPES for o in ByteOrder
    ]  # fmt: skip
    tags += [
        {"name": "text", "address": SCRATCH, "data_type": "string", "length": 5, "writable": True},
        {"name": "bit3", "address": 65, "data_type": "bool", "bit": 3, "writable": True},
        {"name": "scaled", "address": 66, "data_type": "int16", "scale": 0.1, "offset": -20,
         "writable": True, "min": -20, "max": 100},
        {"name": "mode", "address": 67, "writable": True, "allowed": [1, 2, 3]},
        {"name": "run", "table": "coil", "address": 0, "data_type": "bool", "writable": True},
        {"name": "serial", "address": 10, "data_type": "uint16"},
    ]  # fmt: skip
    return tags


def device(device_id: str, port: int) -> dict[str, Any]:
    groups = [{"name": "all", "interval": 0.5, "tags": scratch_tags()}]
    return {"id": device_id, "type": "modbus", "host": "127.0.0.1", "port": port, "unit": 1,
            "groups": groups}  # fmt: skip


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[tuple[ModbusSimulator, ModbusSimulator]]:
    """One simulator with FC22 (mask write), one without."""
    with_mask = ModbusSimulator(tmp_path / "sim", "--period", "1000").start()
    without = ModbusSimulator(tmp_path / "sim2", "--no-mask-write", name="sim2").start()
    yield with_mask, without
    with_mask.stop()
    without.stop()


@pytest.fixture
def gateway(
    tmp_path: Path, sims: tuple[ModbusSimulator, ModbusSimulator]
) -> Iterator[GatewayProcess]:
    with_mask, without = sims
    config = {
        "gateway": {"id": "wgw", "log_level": "INFO"},
        "runtime": {"reconnect_min": 0.5, "reconnect_max": 1},
        "writes": {"enabled": True, "per_minute": 600},
        "devices": [
            device("plc", with_mask.port),
            device("plc-rmw", without.port),
            device("gone", free_port()),
        ],
        "api": {
            "tokens": [
                {"name": "ops", "token": ADMIN_TOKEN, "role": "admin"},
                {"name": "shift", "token": OPERATOR_TOKEN, "role": "operator"},
                {"name": "screen", "token": VIEWER_TOKEN, "role": "viewer"},
            ]
        },
    }
    process = GatewayProcess(tmp_path / "gw", config).start()
    process.wait_api()
    yield process
    assert process.stop() == 0


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with httpx.Client(base_url=gateway.api_url, headers=headers, timeout=20) as client:

        def online() -> bool:
            states = [
                client.get(f"/api/v1/devices/{d}/status").json()["state"]
                for d in ("plc", "plc-rmw")
            ]
            return states == ["online", "online"]

        wait_until(online, 20, "both devices online")
        yield client


def independent_read(sim: ModbusSimulator, address: int, count: int) -> list[int]:
    with ModbusTcpClient("127.0.0.1", port=sim.port) as client:
        response = client.read_holding_registers(address, count=count, device_id=1)
        assert not response.isError(), response
        return list(response.registers)


def write(api: httpx.Client, device_id: str, **values: Any) -> httpx.Response:
    return api.post(f"/api/v1/devices/{device_id}/write", json={"values": values})


def test_every_type_and_byte_order_round_trips(
    api: httpx.Client, sims: tuple[ModbusSimulator, ModbusSimulator]
) -> None:
    sim = sims[0]
    for data_type, value in TYPES.items():
        for order in ByteOrder:
            name = f"{data_type.value}_{order.value}"
            answer = write(api, "plc", **{name: value})
            assert answer.status_code == 200, answer.text
            [result] = answer.json()["results"]
            assert result["result"] == "written" and result["read_back"] == value, result
            assert result["method"] == ("FC6" if data_type.value.endswith("16") else "FC16")
            tag = ModbusTag(name=name, address=0, data_type=data_type, byte_order=order)
            registers = independent_read(sim, SCRATCH, tag.size)
            assert decode_value(tag, registers) == value, (name, registers)
    answer = write(api, "plc", text="PRESS")
    assert answer.json()["results"][0]["read_back"] == "PRESS"
    assert (
        bytes(b for r in independent_read(sim, SCRATCH, 3) for b in divmod(r, 256)) == b"PRESS\x00"
    )
    scaled = write(api, "plc", scaled=42.5).json()["results"][0]
    assert scaled["raw"] == "registers 66: [625]" and scaled["read_back"] == 42.5
    assert independent_read(sim, 66, 1) == [625]


@pytest.mark.parametrize("device_id", ["plc", "plc-rmw"])
def test_a_bit_write_leaves_the_other_15_bits(
    api: httpx.Client, sims: tuple[ModbusSimulator, ModbusSimulator], device_id: str
) -> None:
    sim = sims[0] if device_id == "plc" else sims[1]
    with ModbusTcpClient("127.0.0.1", port=sim.port) as client:
        assert not client.write_register(65, 0b1010_0101_0000_0001, device_id=1).isError()
    for value, expected in ((True, 0b1010_0101_0000_1001), (False, 0b1010_0101_0000_0001)):
        answer = write(api, device_id, bit3=value)
        assert answer.status_code == 200, answer.text
        result = answer.json()["results"][0]
        assert result["read_back"] is value
        assert independent_read(sim, 65, 1) == [expected]
        if device_id == "plc":
            assert result["method"] == "FC22 mask write"
        else:
            assert result["method"].startswith("read-modify-write")


def test_a_coil_and_a_sequence_in_order(api: httpx.Client) -> None:
    answer = write(api, "plc", run=False, mode=2, scaled=50)
    assert answer.status_code == 200, answer.text
    assert [(r["tag"], r["method"], r["read_back"]) for r in answer.json()["results"]] == [
        ("run", "FC5", False),
        ("mode", "FC6", 2),
        ("scaled", "FC6", 50),
    ]
    assert write(api, "plc", run=True).json()["results"][0]["read_back"] is True


def test_refusals_are_clear_4xx_problems_and_audited(
    api: httpx.Client, gateway: GatewayProcess
) -> None:
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    cases: list[tuple[str, dict[str, Any], dict[str, str] | None, int, str]] = [
        ("plc", {"serial": 1}, None, 422, "tag 'serial' is not writable"),
        ("plc", {"scaled": 100.5}, None, 422, "100.5 is above the maximum 100"),
        ("plc", {"mode": 4}, None, 422, "4 is not one of the allowed values [1, 2, 3]"),
        ("plc", {"mode": True}, None, 422, "True is not one of the allowed values"),
        ("plc", {"int16_ABCD": "12"}, None, 422, "'12' is not a number"),
        ("plc", {"int16_ABCD": 40000}, None, 422, "out of the range of a int16"),
        ("plc", {"uint16_ABCD": 1.5}, None, 422, "not a whole uint16"),
        ("plc", {"nope": 1}, None, 422, "has no tag 'nope'"),
        ("gone", {"run": True}, None, 409, "a write is never queued"),
        ("plc", {"run": True}, viewer, 403, "writing needs an operator token"),
        ("ghost", {"run": True}, None, 404, "no device 'ghost'"),
    ]
    for device_id, values, headers, status, message in cases:
        answer = api.post(
            f"/api/v1/devices/{device_id}/write", json={"values": values}, headers=headers
        )
        assert answer.status_code == status, (values, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert message in answer.json()["detail"], answer.json()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    entries = api.get("/api/v1/audit", params={"limit": 50}, headers=admin).json()["items"]
    refused = [e for e in entries if e["result"] == "refused"]
    assert {e["device"] for e in refused} == {"plc", "gone", "ghost"}
    assert len(refused) == len(cases)
    assert {e["who"] for e in refused} == {"token:shift", "token:screen"}
    assert all(e["path"] == "rest" for e in refused)
    assert api.get("/api/v1/audit").status_code == 403  # an operator may not read the audit


def test_every_attempt_is_audited_with_what_went_on_the_wire(api: httpx.Client) -> None:
    write(api, "plc", scaled=10.0)
    answer = write(api, "plc", scaled=12.5)
    assert answer.status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    [entry] = api.get("/api/v1/audit", params={"device": "plc", "limit": 1}, headers=admin).json()[
        "items"
    ]
    assert entry["tag"] == "scaled" and entry["requested"] == 12.5
    assert (entry["result"], entry["method"], entry["raw"]) == (
        "written",
        "FC6",
        "registers 66: [325]",
    )
    assert (entry["before"], entry["read_back"]) == (10.0, 12.5)
    assert entry["duration_ms"] > 0 and entry["who"] == "token:shift"
    metrics = api.get("/metrics").text
    assert 'gateway_writes_total{result="written"}' in metrics


NS = "nsu=urn:edge-gateway:opcua-sim;s="


@pytest.fixture
def opcua_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, OpcUaSimulator]]:
    sim = OpcUaSimulator(tmp_path / "ua-sim").start()
    tags = [
        {"name": "setpoint", "node": f"{NS}Line1.Filler.Setpoint", "writable": True},
        {"name": "speed_sp", "node": f"{NS}Line1.Conveyor.SpeedSetpoint", "writable": True},
        {"name": "counter", "node": f"{NS}Line1.Filler.Counter", "writable": True},
    ]
    config = {
        "gateway": {"id": "wgw"},
        "writes": {"enabled": True},
        "devices": [{"id": "ua", "type": "opcua", "endpoint": sim.endpoint,
                     "groups": [{"name": "g", "tags": tags}]}],
        "api": {"tokens": [{"name": "shift", "token": OPERATOR_TOKEN, "role": "operator"}]},
    }  # fmt: skip
    process = GatewayProcess(tmp_path / "gw", config).start()
    try:
        process.wait_api()
        yield process, sim
    finally:
        assert process.stop() == 0
        sim.stop()


async def read_node(sim: OpcUaSimulator, node: str) -> Any:
    async with Client(sim.endpoint) as client:
        namespace = await client.get_namespace_index("urn:edge-gateway:opcua-sim")
        return await client.get_node(f"ns={namespace};s={node}").read_value()


def test_opcua_writes_with_the_nodes_own_type(
    opcua_gateway: tuple[GatewayProcess, OpcUaSimulator],
) -> None:
    gateway, sim = opcua_gateway
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with httpx.Client(base_url=gateway.api_url, headers=headers, timeout=20) as api:
        wait_until(
            lambda: api.get("/api/v1/devices/ua/status").json()["state"] == "online",
            20,
            "the OPC UA device online",
        )
        answer = write(api, "ua", setpoint=77.25, speed_sp=2.5)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [(r["raw"], r["before"], r["read_back"]) for r in results] == [
            ("Double 77.25", 42.5, 77.25),
            ("Float 2.5", 1.5, 2.5),
        ]
        assert asyncio.run(read_node(sim, "Line1.Filler.Setpoint")) == 77.25
        assert asyncio.run(read_node(sim, "Line1.Conveyor.SpeedSetpoint")) == 2.5
        wrong = write(api, "ua", setpoint="fast")
        assert wrong.status_code == 422
        assert "'fast' is not a number (the node is a Double)" in wrong.json()["detail"]
        too_big = write(api, "ua", speed_sp=1e39)
        assert (
            too_big.status_code == 422 and "beyond the range of a Float" in too_big.json()["detail"]
        )
        refused = write(api, "ua", counter=5)
        assert refused.status_code == 502
        assert "the server refused it: BadUserAccessDenied" in refused.json()["detail"]
        assert refused.json()["results"][0]["result"] == "failed"


class Requester:
    """An MQTT 5 client that publishes commands and collects what comes back."""

    def __init__(self, broker: Mosquitto, *topics: str) -> None:
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="requester", protocol=MQTTProtocolVersion.MQTTv5
        )
        subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, message: self.received.put(message)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert subscribed.wait(10), "subscribed"

    def send(
        self,
        topic: str,
        body: Any,
        *,
        reply_to: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> None:
        properties = None
        if reply_to is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = reply_to
            if correlation is not None:
                properties.CorrelationData = correlation
        self.client.publish(
            topic, json.dumps(body), qos=1, retain=retain, properties=properties
        ).wait_for_publish(10)

    def next(self, timeout: float = 15) -> mqtt.MQTTMessage:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_commands_over_mqtt_answer_on_the_result_topic_and_the_response_topic(
    tmp_path: Path, mosquitto: Mosquitto, sims: tuple[ModbusSimulator, ModbusSimulator]
) -> None:
    sim = sims[0]
    config = {
        "gateway": {"id": "wgw"},
        "writes": {"enabled": True, "mqtt": True},
        "sinks": {"mqtt": {"type": "mqtt", "host": mosquitto.host, "port": mosquitto.port,
                           "topic_prefix": "plant", "protocol": 5}},
        "devices": [device("plc", sim.port)],
    }  # fmt: skip
    process = GatewayProcess(tmp_path / "gw", config).start()
    requester = Requester(mosquitto, "plant/wgw/plc/set/result", "replies/#")
    try:
        process.wait_api()
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=process.api_url, headers=admin, timeout=10) as api:
            wait_until(
                lambda: api.get("/api/v1/devices/plc/status").json()["state"] == "online",
                20,
                "plc online",
            )
            topic = "plant/wgw/plc/set"

            def answer_to(body: Any, **options: Any) -> tuple[mqtt.MQTTMessage, dict[str, Any]]:
                # The gateway subscribes once connected: send until an answer comes.
                for _ in range(20):
                    requester.send(topic, body, **options)
                    try:
                        message = requester.next(1.0)
                    except queue.Empty:
                        continue
                    return message, json.loads(message.payload)
                raise AssertionError("no answer to the command")

            message, reply = answer_to({"values": {"scaled": 33.5}})
            assert message.topic == "plant/wgw/plc/set/result"
            assert reply["ok"] is True and reply["results"][0]["read_back"] == 33.5
            assert independent_read(sim, 66, 1) == [535]
            message, reply = answer_to(
                {"values": {"mode": 3}}, reply_to="replies/hmi-7", correlation=b"req-42"
            )
            assert message.topic == "replies/hmi-7"
            assert getattr(message.properties, "CorrelationData", None) == b"req-42"
            assert reply["ok"] is True and reply["results"][0]["read_back"] == 3
            _, reply = answer_to({"values": {"serial": 1}})
            assert (reply["ok"], reply["status"]) == (False, 422)
            assert "not writable" in reply["error"]
            _, reply = answer_to({"values": "junk"})
            assert reply["status"] == 400 and "not a write request" in reply["error"]
            # A retained command is applied when it arrives live (the broker clears the flag
            # for subscribers already there), but never replayed to a gateway that subscribes
            # again later.
            _, reply = answer_to({"values": {"mode": 1}}, retain=True)
            assert reply["ok"] is True
            _, reply = answer_to({"values": {"mode": 2}})
            assert reply["ok"] is True
            assert process.stop() == 0
            process.start()
            process.wait_api()
            replayed = json.loads(requester.next().payload)
            assert replayed["status"] == 400
            assert "a retained command is never applied" in replayed["error"]
            assert independent_read(sim, 67, 1) == [2]
            requester.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
            entries = api.get("/api/v1/audit", params={"device": "plc"}).json()["items"]
            assert {e["who"] for e in entries} == {"mqtt:plant/wgw/plc/set"}
            assert {e["path"] for e in entries} == {"mqtt"}
    finally:
        requester.close()
        assert process.stop() == 0
