"""Hostile devices: garbage, short frames, wrong transaction ids, exceptions, silence.

Fake Modbus TCP devices (asyncio servers in a thread of the test) answer every request the
wrong way; a misbehaving OPC UA server flips StatusCodes or stops answering. Each must give a
clear per-device or per-tag error, and neither the gateway nor a healthy device on the side may
notice: it keeps publishing at its rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import free_port, wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "it-hostile"
GW = "gw-hostile"
TIMEOUT = 0.5
"""Seconds the gateway waits for a device's answer."""
HEALTHY_INTERVAL = 0.1
GROUP = [
    {"name": "state", "address": 0},
    {"name": "counter", "address": 2, "data_type": "uint32"},
]
"""One read of holding registers 0..3 per cycle."""


def telemetry(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/telemetry"


def status(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/status"


def on(topic: str, check: Callable[[Any], bool] = lambda _: True) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic and bool(m.payload) and check(m.json())


def offline_because(device: str, reasons: tuple[str, ...]) -> Callable[[Received], bool]:
    """The device's status says offline, for one of ``reasons``."""
    return on(
        status(device),
        lambda p: p["state"] == "offline" and any(r in (p["last_error"] or "") for r in reasons),
    )


def tag_is(device: str, kind: str, tag: str, expected: object) -> Callable[[Received], bool]:
    """Telemetry whose ``kind`` (values, bad, uncertain) says ``expected`` for ``tag``."""
    return on(telemetry(device), lambda p: p.get(kind, {}).get(tag) == expected)


# --- fake Modbus TCP devices ------------------------------------------------------------------


def _frame(tid: int, unit: int, pdu: bytes, pid: int = 0) -> bytes:
    """A Modbus TCP frame: MBAP header (transaction, protocol, length, unit) and the PDU."""
    return struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu


def _registers(count: int, function: int = 3) -> bytes:
    return struct.pack(">BB", function, 2 * count) + bytes(2 * count)


Answer = Callable[[int, int, int], bytes | None]
"""(transaction id, unit, registers asked for) → what the device sends back (None: nothing)."""

ANSWERS: dict[str, Answer] = {
    "garbage": lambda tid, unit, count: b"\xde\xad\xbe\xef" * 8,
    "short_frame": lambda tid, unit, count: _frame(tid, unit, _registers(count))[:5],
    "wrong_transaction_id": lambda tid, unit, count: _frame(tid + 1, unit, _registers(count)),
    "wrong_protocol_id": lambda tid, unit, count: _frame(tid, unit, _registers(count), pid=7),
    "exception_4": lambda tid, unit, count: _frame(tid, unit, bytes([0x83, 4])),
    "exception_unknown": lambda tid, unit, count: _frame(tid, unit, bytes([0x83, 0x42])),
    "fewer_registers": lambda tid, unit, count: _frame(tid, unit, _registers(count - 2)),
    "another_function": lambda tid, unit, count: _frame(tid, unit, _registers(count, 4)),
    "unknown_function": lambda tid, unit, count: _frame(tid, unit, bytes([0x55])),
    "late": lambda tid, unit, count: _frame(tid, unit, _registers(count)),
    "silent": lambda tid, unit, count: None,
}
LATE = 2 * TIMEOUT
"""How long the "late" device takes to answer."""

NO_ANSWER = ("no response within 0.5 s", "stopped answering")
"""What a device that does not answer shows: its requests time out, and after a few pymodbus
closes the connection (the device reconnects with backoff)."""
UNDECODABLE = ("undecodable answer", "stopped answering")
"""What a device that answers with something that is no Modbus answer to the request shows."""
EXPECTED: dict[str, tuple[str, ...]] = {
    "garbage": UNDECODABLE,
    "short_frame": UNDECODABLE,
    "wrong_transaction_id": UNDECODABLE,
    "wrong_protocol_id": UNDECODABLE,
    "late": (*NO_ANSWER, *UNDECODABLE),  # its answer arrives during the next request
    "silent": NO_ANSWER,
    "unknown_function": UNDECODABLE,
    "exception_4": ("modbus exception 4 (server device failure)",),
    "exception_unknown": ("modbus exception 66 (unknown)",),
    "fewer_registers": ("invalid response: 2 registers to a read of 4",),
    "another_function": ("invalid response: function code 4 to a read of function code 3",),
}
"""Per device: the reason its requests fail (any of these)."""


class FakeDevices:
    """One fake Modbus TCP device per answer, each on a free port, served by an asyncio loop
    in a thread of its own (the gateway under test is another process)."""

    host = "127.0.0.1"

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.ports: dict[str, int] = {}
        self._connections: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> FakeDevices:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the fake devices did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = []
        for name, answer in self.answers.items():
            serve = functools.partial(self._serve, answer=answer, name=name)
            server = await asyncio.start_server(serve, self.host, 0)
            servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        for server in servers:
            server.close()
        for writer in self._connections:
            writer.close()  # the gateway's connections: each handler then reads EOF and ends
        for server in servers:
            await server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer, name: str
    ) -> None:
        self._connections.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                count = struct.unpack(">H", pdu[3:5])[0] if len(pdu) >= 5 else 0
                reply = answer(tid, unit, count)
                if name == "late":
                    await asyncio.sleep(LATE)  # the device's own slowness
                if reply is not None:
                    writer.write(reply)
        self._connections.discard(writer)
        writer.close()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start()
    yield watcher
    watcher.stop()


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator(tmp_path / "sim", "--units", "1")
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture
def run_gateway(
    tmp_path: Path, mosquitto: Mosquitto
) -> Iterator[Callable[[list[dict[str, Any]]], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def run(devices: list[dict[str, Any]]) -> GatewayProcess:
        config = {
            "gateway": {"id": GW, "log_level": "INFO"},
            "sinks": {
                "mqtt": {
                    "type": "mqtt",
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "topic_prefix": PREFIX,
                }
            },
            "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "status_interval": 1},
            "devices": devices,
        }
        gateway = GatewayProcess(tmp_path / f"gateway{len(started)}", config)
        started.append(gateway)
        return gateway.start()

    yield run
    for gateway in started:
        gateway.stop()


def modbus_device(device_id: str, port: int, interval: float) -> dict[str, Any]:
    return {
        "id": device_id, "type": "modbus", "host": "127.0.0.1", "port": port, "unit": 1,
        "timeout": TIMEOUT, "groups": [{"name": "g", "interval": interval, "tags": GROUP}],
    }  # fmt: skip


def assert_keeps_its_rate(watch: MqttWatch, device: str, interval: float, seconds: float) -> None:
    """The device's cycles over the next ``seconds``: at least 90 % of nominal, no stall."""
    start_ms = wait_until(lambda: watch.messages(telemetry(device))[-1:], 10)[0].json()["ts"]
    end_ms = start_ms + seconds * 1000
    watch.wait_for(on(telemetry(device), lambda p: p["ts"] >= end_ms), seconds + 10)
    stamps = sorted(
        {p["ts"] for p in watch.payloads(telemetry(device)) if start_ms <= p["ts"] < end_ms}
    )
    assert len(stamps) >= 0.9 * seconds / interval, (device, len(stamps))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 3 * interval * 1000, (device, max(gaps))


# --- the tests --------------------------------------------------------------------------------


def test_hostile_modbus_devices_get_clear_errors_and_stall_nobody(
    healthy: ModbusSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    with FakeDevices(ANSWERS) as fakes:
        devices = [modbus_device(name, port, 0.2) for name, port in fakes.ports.items()]
        devices.append(modbus_device("healthy", healthy.port, HEALTHY_INTERVAL))
        gateway = run_gateway(devices)
        for name, reasons in EXPECTED.items():
            watch.wait_for(offline_because(name, reasons), 20, f"{name} offline: {reasons}")
        # Per-tag reasons in the telemetry of the devices whose answers arrive, however wrong.
        for name in ("exception_4", "exception_unknown", "fewer_registers", "another_function"):
            bad = watch.wait_for(on(telemetry(name), lambda p: "bad" in p), 10).json()
            assert bad["values"] == {}, name
            assert set(bad["bad"]) == {"state", "counter"}, name
            assert all(EXPECTED[name][0] in reason for reason in bad["bad"].values()), bad
        timed_out = watch.wait_for(on(telemetry("silent"), lambda p: "bad" in p), 10).json()
        assert set(timed_out["bad"].values()) == {"no response within 0.5 s"}
        garbled = watch.wait_for(on(telemetry("garbage"), lambda p: "bad" in p), 10).json()
        assert all("undecodable answer" in reason for reason in garbled["bad"].values()), garbled
        assert_keeps_its_rate(watch, "healthy", HEALTHY_INTERVAL, 3.0)
        healthy_status = watch.wait_for(on(status("healthy")), 5).json()
        assert healthy_status["state"] == "online" and healthy_status["request_errors"] == 0
        assert httpx.get(f"{gateway.api_url}/healthz", timeout=5).status_code == 200
        # And it stops cleanly (exit code 0: no SIGKILL), hostile devices and all.
        assert gateway.stop() == 0
    assert "Traceback" not in gateway.log()


class StatusServer:
    """An asyncua server in a thread of its own with one variable, ``Level``, whose value and
    StatusCode the test sets: a PLC reporting a failing sensor, or a code of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}"
        self.node = "ns=2;s=Level"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = Server()

    def __enter__(self) -> StatusServer:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set(self, value: float, code: int) -> None:
        """Serve ``value`` with the StatusCode ``code``, with a fresh source timestamp."""
        now = ua.DateTime.now(UTC)
        data = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.UInt32(code)),
            SourceTimestamp=now,
            ServerTimestamp=now,
        )
        self._call(self._server.write_attribute_value(ua.NodeId.from_string(self.node), data))

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _stop(self) -> None:
        """Stop the server and end its sessions' tasks (the gateway may still be connected)."""
        await self._server.stop()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def _start(self) -> None:
        await self._server.init()
        self._server.set_endpoint(self.endpoint)
        namespace = await self._server.register_namespace("urn:test:status")
        assert namespace == 2
        objects = self._server.nodes.objects
        await objects.add_variable(ua.NodeId(ua.String("Level"), ua.Int16(namespace)), "Level", 1.5)
        await self._server.start()


def test_bad_and_vendor_status_codes_are_per_tag_reasons_in_both_modes(
    healthy: ModbusSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    with StatusServer() as server:
        groups = [
            {"name": "sub", "interval": 0.1, "tags": [{"name": "level", "node": server.node}]},
            {
                "name": "poll", "mode": "polling", "interval": 0.1,
                "tags": [{"name": "level_polled", "node": server.node}],
            },
        ]  # fmt: skip
        plc = {
            "id": "plc", "type": "opcua", "endpoint": server.endpoint, "timeout": 2,
            "keepalive": 1, "groups": groups,
        }  # fmt: skip
        run_gateway([plc, modbus_device("healthy", healthy.port, HEALTHY_INTERVAL)])
        for tag in ("level", "level_polled"):
            watch.wait_for(tag_is("plc", "values", tag, 1.5), 20, tag)
        vendor_bad = 0x81230000  # a Bad code the standard does not define: shown as hex
        steps: list[tuple[float, int, str, str]] = [
            (-1.0, StatusCodes.BadSensorFailure, "bad", "BadSensorFailure"),
            (-2.0, vendor_bad, "bad", "0x81230000"),
            (2.5, StatusCodes.UncertainLastUsableValue, "uncertain", "UncertainLastUsableValue"),
        ]
        for value, code, kind, reason in steps:
            server.set(value, code)
            for tag in ("level", "level_polled"):
                watch.wait_for(tag_is("plc", kind, tag, reason), 10, f"{tag}: {kind} {reason}")
        server.set(3.5, StatusCodes.Good)
        for tag in ("level", "level_polled"):
            back = watch.wait_for(tag_is("plc", "values", tag, 3.5), 10)
            assert tag not in back.json().get("bad", {})
        # A bad value is the tag's problem, not the connection's.
        online = watch.wait_for(on(status("plc"), lambda p: p["state"] == "online"), 5).json()
        assert online["last_error"] is None
        assert_keeps_its_rate(watch, "healthy", HEALTHY_INTERVAL, 2.0)


def test_a_hung_opcua_server_goes_offline_and_comes_back(
    tmp_path: Path,
    healthy: ModbusSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    sim = OpcUaSimulator(tmp_path / "opcua")
    sim.start()
    try:
        counter = "nsu=urn:edge-gateway:opcua-sim;s=Line1.Filler.Counter"
        plc = {
            "id": "plc", "type": "opcua", "endpoint": sim.endpoint, "timeout": 1,
            "keepalive": 1,
            "groups": [{"name": "sub", "interval": 0.2, "tags": [{"name": "c", "node": counter}]}],
        }  # fmt: skip
        run_gateway([plc, modbus_device("healthy", healthy.port, HEALTHY_INTERVAL)])
        watch.wait_for(on(status("plc"), lambda p: p["state"] == "online"), 20)
        sim.process.suspend()  # the server keeps its socket open and answers nothing
        down = watch.wait_for(on(status("plc"), lambda p: p["state"] == "offline"), 15).json()
        assert sim.endpoint in down["last_error"], down
        assert_keeps_its_rate(watch, "healthy", HEALTHY_INTERVAL, 3.0)
        watch.clear()
        sim.process.resume()
        watch.wait_for(on(status("plc"), lambda p: p["state"] == "online"), 30)
        watch.wait_for(on(telemetry("plc"), lambda p: "c" in p["values"]), 10)
    finally:
        sim.stop()
