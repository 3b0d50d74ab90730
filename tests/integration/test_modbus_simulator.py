"""The Modbus PLC simulator as a real process, read through pymodbus' TCP client.

Registers are decoded here with ``struct`` (independently of the simulator's encoders) and
compared with ``machine.expected_values``; ``test_expected_values_follow_the_spec`` ties
those to the formulas of the address map. Moving values are checked at the tick shown by
the part counter read in the same request, or within the ticks read just before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from simulators.modbus.__main__ import parse_units
from simulators.modbus.machine import expected_values

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
ILLEGAL_ADDRESS = 2
GATEWAY_NO_RESPONSE = 0x0B


@dataclass
class SimProcess:
    """A running simulator process and the port it announced."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it (kill after a timeout) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_simulator(args: Sequence[str], log: Path) -> SimProcess:
    """Start ``python -m simulators.modbus --port 0 ARGS`` and wait for its READY line."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.modbus", "--port", "0", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        line = ""
    match = re.fullmatch(r"READY port=(\d+)\n", line)
    if match is None:
        proc.kill()
        proc.wait()
        stdout.close()
        pytest.fail(f"no READY line (got {line!r}); stderr:\n{log.read_text()}")
    return SimProcess(proc, int(match[1]), log)


def finish(sim: SimProcess) -> None:
    """Stop a simulator (if still running) and release its stdout pipe."""
    sim.stop()
    assert sim.proc.stdout is not None
    sim.proc.stdout.close()


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """Units 1..3, only read from (tests that write start their own simulator)."""
    sim = start_simulator(["--units", "3"], tmp_path_factory.mktemp("modbus-sim") / "sim.log")
    yield sim
    finish(sim)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    """Start simulators with the given CLI arguments; all are stopped after the test."""
    started: list[SimProcess] = []

    def _launch(*args: str) -> SimProcess:
        sim = start_simulator(args, tmp_path / f"sim{len(started)}.log")
        started.append(sim)
        return sim

    yield _launch
    for sim in started:
        finish(sim)


@asynccontextmanager
async def connect(
    sim: SimProcess, framer: FramerType = FramerType.SOCKET
) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected client of ``sim``."""
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, framer=framer, timeout=3, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


# Independent decoding of the served registers.


def decode(registers: Sequence[int], fmt: str, order: str = "ABCD") -> float | int:
    """Decode one struct ``fmt`` value from registers in byte order A (MSB) .. D."""
    n = len(registers)
    words = list(registers)
    raw = {
        "ABCD": struct.pack(f">{n}H", *words),
        "CDAB": struct.pack(f">{n}H", *words[::-1]),
        "BADC": struct.pack(f"<{n}H", *words),
        "DCBA": struct.pack(f"<{n}H", *words[::-1]),
    }[order]
    value: float | int = struct.unpack(">" + fmt, raw)[0]
    return value


def decode_holding(regs: Sequence[int]) -> dict[str, object]:
    """Holding registers 0..49 decoded by the address map."""
    assert len(regs) == 50
    return {
        "state": regs[0],
        "setpoint": decode(regs[1:2], "h"),
        "counter": decode(regs[2:4], "I"),
        "temperature": decode(regs[4:6], "f"),
        "temperature_cdab": decode(regs[6:8], "f", "CDAB"),
        "temperature_badc": decode(regs[8:10], "f", "BADC"),
        "temperature_dcba": decode(regs[10:12], "f", "DCBA"),
        "energy": decode(regs[12:16], "d"),
        "int64_constant": decode(regs[16:20], "q"),
        "uint64_constant": decode(regs[20:24], "Q"),
        "int16_constant": decode(regs[24:25], "h"),
        "int32_constant": decode(regs[25:27], "i"),
        "alarms": regs[27],
        "reserved": list(regs[28:30]),
        "name": struct.pack(">10H", *regs[30:40]).rstrip(b"\x00").decode("ascii"),
        "pattern": list(regs[40:50]),
    }


def decode_inputs(regs: Sequence[int]) -> dict[str, object]:
    """Input registers 0..5 decoded by the address map."""
    return {
        "pressure": decode(regs[0:2], "f"),
        "speed": regs[2],
        "ambient_x10": decode(regs[3:4], "h"),
        "flow": decode(regs[4:6], "f", "CDAB"),
    }


def close_to(decoded: Mapping[str, object], expected: Mapping[str, object]) -> bool:
    """Decoded values equal the expected ones (floats within float32 precision)."""
    for name, value in decoded.items():
        want = expected[name]
        if isinstance(want, float):
            assert isinstance(value, float)
            if not math.isclose(value, want, rel_tol=1e-6):
                return False
        elif value != want:
            return False
    return True


def tick_of(holding: dict[str, object], unit: int) -> int:
    """The tick a holding read was served at, from its part counter."""
    counter = holding["counter"]
    assert isinstance(counter, int)
    return counter - 1000 * unit


async def read_ok(pending: Awaitable[ModbusPDU]) -> ModbusPDU:
    """Await a client request and assert it succeeded."""
    response = await pending
    assert not response.isError(), response
    return response


async def read_tick(client: AsyncModbusTcpClient, unit: int) -> int:
    """The unit's current tick, from its part counter."""
    rr = await read_ok(client.read_holding_registers(2, count=2, device_id=unit))
    return int(decode(rr.registers, "I")) - 1000 * unit


async def wait_for_tick(client: AsyncModbusTcpClient, unit: int, tick: int) -> None:
    """Poll the part counter until it reaches ``tick`` (deadline 10 s)."""
    deadline = time.monotonic() + 10
    while await read_tick(client, unit) < tick:
        assert time.monotonic() < deadline, f"tick {tick} not reached"
        await asyncio.sleep(0.02)


def assert_exception(response: ModbusPDU, code: int) -> None:
    """The response is a Modbus exception with ``code``."""
    assert response.isError(), response
    assert response.exception_code == code, response


# The model itself.


@pytest.mark.parametrize("unit", [1, 2, 7])
@pytest.mark.parametrize("tick", [0, 1, 49, 50, 101, 150, 12345])
def test_expected_values_follow_the_spec(unit: int, tick: int) -> None:
    values = expected_values(unit, tick)
    state = (tick // 50 + unit) % 4
    temperature = 60.0 + unit + 5 * math.sin(tick / 20)
    assert values["state"] == state
    assert values["setpoint"] == 500 + unit
    assert values["counter"] == tick + 1000 * unit
    for name in ("temperature", "temperature_cdab", "temperature_badc", "temperature_dcba"):
        assert values[name] == temperature
    assert values["energy"] == 12345.678 + unit + tick * 0.001
    assert values["int64_constant"] == -1234567890123 - unit
    assert values["uint64_constant"] == 18000000000000000000 + unit
    assert values["int16_constant"] == -1234
    assert values["int32_constant"] == -123456789
    assert values["alarms"] == (state == 2) | 1 << 3 | (tick % 2) << 15
    assert values["name"] == f"SIM-PLC-{unit}"
    assert values["pattern"] == [0x0100 * i + unit for i in range(10)]
    assert values["pressure"] == 4.0 + 0.5 * math.sin(tick / 10) + unit * 0.1
    assert values["speed"] == 1450 + tick % 10 + unit
    assert values["ambient_x10"] == 215 + unit
    assert values["flow"] == 12.5 + unit
    assert values["heartbeat"] is (tick % 2 == 1)
    assert values["part_present"] is (tick % 3 == 0)
    assert values["overtemp"] is (state == 2)


def test_parse_units() -> None:
    assert parse_units("3") == (1, 2, 3)
    assert parse_units("1,5,9") == (1, 5, 9)
    assert parse_units("7,") == (7,)
    for bad in ("0", "1,1", "248,", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_units(bad)


# Served values.


@pytest.mark.parametrize("unit", [1, 2, 3])
async def test_holding_registers_decode_to_the_map(shared_sim: SimProcess, unit: int) -> None:
    async with connect(shared_sim) as client:
        rr = await read_ok(client.read_holding_registers(0, count=50, device_id=unit))
    holding = decode_holding(rr.registers)
    tick = tick_of(holding, unit)
    assert tick >= 0
    assert close_to(holding, expected_values(unit, tick)), (tick, holding)


async def test_input_registers_decode_to_the_map(shared_sim: SimProcess) -> None:
    async with connect(shared_sim) as client:
        for unit in (1, 2, 3):
            before = await read_tick(client, unit)
            rr = await read_ok(client.read_input_registers(0, count=6, device_id=unit))
            after = await read_tick(client, unit)
            inputs = decode_inputs(rr.registers)
            ticks = range(before, after + 1)
            assert any(close_to(inputs, expected_values(unit, t)) for t in ticks), inputs


async def test_coils_and_discrete_inputs(shared_sim: SimProcess) -> None:
    async with connect(shared_sim) as client:
        for unit in (1, 2, 3):
            before = await read_tick(client, unit)
            coils = await read_ok(client.read_coils(0, count=16, device_id=unit))
            inputs = await read_ok(client.read_discrete_inputs(0, count=16, device_id=unit))
            after = await read_tick(client, unit)
            ticks = range(before, after + 1)
            assert any(coils.bits[:16] == [True, False, t % 2 == 1] + [False] * 13 for t in ticks)
            assert any(
                inputs.bits[:16]
                == [True, True, t % 3 == 0, (t // 50 + unit) % 4 == 2] + [False] * 12
                for t in ticks
            )
            one = await read_ok(client.read_coils(1, count=1, device_id=unit))
            assert one.bits[0] is False  # coil 1 alone: a bit address, not a register


@pytest.mark.parametrize(
    ("kind", "address", "count"),
    [
        ("holding", 50, 1),
        ("holding", 59, 1),
        ("holding", 45, 10),  # coalesced across the hole: fails as a whole
        ("holding", 55, 10),
        ("holding", 0, 51),
        ("holding", 70, 1),
        ("holding", 1000, 1),  # no bulk registers without --bulk-registers
        ("input", 6, 1),
        ("input", 0, 7),
        ("coil", 16, 1),
        ("coil", 10, 8),
        ("discrete", 16, 1),
        ("discrete", 0, 17),
    ],
)
async def test_undefined_addresses_answer_exception_2(
    shared_sim: SimProcess, kind: str, address: int, count: int
) -> None:
    async with connect(shared_sim) as client:
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[kind]
        assert_exception(await read(address, count=count, device_id=1), ILLEGAL_ADDRESS)


async def test_scratch_and_reserved_registers_are_readable(shared_sim: SimProcess) -> None:
    async with connect(shared_sim) as client:
        rr = await read_ok(client.read_holding_registers(60, count=10, device_id=2))
        assert rr.registers == [0] * 10
        rr = await read_ok(client.read_holding_registers(28, count=2, device_id=2))
        assert rr.registers == [0, 0]


async def test_values_move_with_time(shared_sim: SimProcess) -> None:
    async with connect(shared_sim) as client:
        start = await read_tick(client, 1)
        heartbeats: set[bool] = set()
        deadline = time.monotonic() + 10
        while len(heartbeats) < 2 or await read_tick(client, 1) < start + 3:
            assert time.monotonic() < deadline, "values do not move"
            rr = await read_ok(client.read_coils(2, count=1, device_id=1))
            heartbeats.add(rr.bits[0])
            await asyncio.sleep(0.02)
        assert heartbeats == {False, True}


async def test_units_differ_and_unknown_unit_answers_0x0b(shared_sim: SimProcess) -> None:
    async with connect(shared_sim) as client:
        served = {}
        for unit in (1, 2, 3):
            rr = await read_ok(client.read_holding_registers(30, count=20, device_id=unit))
            served[unit] = rr.registers
        assert len({tuple(regs) for regs in served.values()}) == 3
        assert_exception(
            await client.read_holding_registers(0, count=1, device_id=4), GATEWAY_NO_RESPONSE
        )
        assert_exception(await client.write_register(1, 1, device_id=4), GATEWAY_NO_RESPONSE)


async def test_writes_stick_and_read_only_points_refuse_writes(
    launch: Callable[..., SimProcess],
) -> None:
    sim = launch("--units", "2", "--period", "0.05")
    async with connect(sim) as client:
        await read_ok(client.write_register(1, 1234, device_id=1))
        await read_ok(client.write_registers(60, list(range(100, 110)), device_id=1))
        await read_ok(client.write_register(1, 0xFFFB, device_id=2))  # int16 -5
        await read_ok(client.write_coil(0, False, device_id=1))
        await read_ok(client.write_coil(1, True, device_id=1))
        await read_ok(client.write_coils(3, [True] * 13, device_id=1))

        assert_exception(await client.write_register(0, 1, device_id=1), ILLEGAL_ADDRESS)
        assert_exception(await client.write_registers(1, [7, 7], device_id=1), ILLEGAL_ADDRESS)
        assert_exception(await client.write_register(50, 1, device_id=1), ILLEGAL_ADDRESS)
        assert_exception(await client.write_coil(2, True, device_id=1), ILLEGAL_ADDRESS)
        assert_exception(await client.write_coil(16, True, device_id=1), ILLEGAL_ADDRESS)

        await wait_for_tick(client, 1, await read_tick(client, 1) + 2)  # survive ticks
        rr = await read_ok(client.read_holding_registers(0, count=2, device_id=1))
        assert rr.registers[1] == 1234
        rr = await read_ok(client.read_holding_registers(60, count=10, device_id=1))
        assert rr.registers == list(range(100, 110))
        rr = await read_ok(client.read_holding_registers(1, count=1, device_id=2))
        assert decode(rr.registers, "h") == -5
        coils = (await read_ok(client.read_coils(0, count=16, device_id=1))).bits
        assert coils[:2] == [False, True]
        assert coils[3:16] == [True] * 13
        untouched = (await read_ok(client.read_coils(0, count=16, device_id=2))).bits
        assert untouched[:2] == [True, False]
        assert untouched[3:16] == [False] * 13


async def test_bulk_registers(launch: Callable[..., SimProcess]) -> None:
    sim = launch("--units", "2", "--bulk-registers", "300")
    async with connect(sim) as client:
        for unit in (1, 2):
            for read in (client.read_holding_registers, client.read_input_registers):
                for address, count in [(1000, 125), (1175, 125), (1290, 10)]:
                    before = await read_tick(client, unit)
                    rr = await read_ok(read(address, count=count, device_id=unit))
                    after = await read_tick(client, unit)
                    addresses = range(address, address + count)
                    assert any(
                        rr.registers == [(a + tick * 7 + unit) & 0xFFFF for a in addresses]
                        for tick in range(before, after + 1)
                    )
                assert_exception(await read(1295, count=10, device_id=unit), ILLEGAL_ADDRESS)
                assert_exception(await read(999, count=2, device_id=unit), ILLEGAL_ADDRESS)
        assert_exception(await client.write_register(1000, 1, device_id=1), ILLEGAL_ADDRESS)


async def test_record_file_lists_every_served_read(
    launch: Callable[..., SimProcess], tmp_path: Path
) -> None:
    record = tmp_path / "served.jsonl"
    sim = launch("--units", "2", "--bulk-registers", "200", "--record", str(record))
    served: list[tuple[int, int, int, int, list[int] | list[bool]]] = []
    t_start = time.time_ns()
    async with connect(sim) as client:
        reads = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }
        for unit, fc, address, count in [
            (1, 3, 0, 50),
            (2, 4, 0, 6),
            (1, 3, 1075, 125),
            (2, 4, 1000, 3),
            (1, 1, 0, 3),
            (2, 2, 1, 4),
            (2, 1, 0, 16),
        ]:
            rr = await read_ok(reads[fc](address, count=count, device_id=unit))
            values: list[int] | list[bool] = (
                list(rr.registers) if fc in (3, 4) else list(rr.bits[:count])
            )
            served.append((unit, fc, address, count, values))
        # Not recorded: failed reads and writes (including the read-back of a write).
        assert_exception(
            await client.read_holding_registers(1195, count=10, device_id=1), ILLEGAL_ADDRESS
        )
        await read_ok(client.write_register(1, 42, device_id=1))
        await read_ok(client.write_coil(0, False, device_id=1))
    t_end = time.time_ns()

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [
        (line["unit"], line["fc"], line["address"], line["count"], line["values"]) for line in lines
    ] == served
    assert all(set(line) == {"t_ns", "unit", "fc", "address", "count", "values"} for line in lines)
    stamps = [line["t_ns"] for line in lines]
    assert stamps == sorted(stamps)
    assert t_start <= stamps[0] and stamps[-1] <= t_end


async def test_rtu_framing_over_tcp_and_unit_list(launch: Callable[..., SimProcess]) -> None:
    sim = launch("--framer", "rtu", "--units", "2,7")
    async with connect(sim, FramerType.RTU) as client:
        for unit in (2, 7):
            rr = await read_ok(client.read_holding_registers(0, count=50, device_id=unit))
            holding = decode_holding(rr.registers)
            assert close_to(holding, expected_values(unit, tick_of(holding, unit)))
        assert_exception(
            await client.read_holding_registers(50, count=1, device_id=2), ILLEGAL_ADDRESS
        )
        await read_ok(client.write_register(1, 777, device_id=7))
        rr = await read_ok(client.read_holding_registers(1, count=1, device_id=7))
        assert rr.registers == [777]
        rr = await read_ok(client.read_coils(0, count=2, device_id=7))
        assert rr.bits[:2] == [True, False]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(launch: Callable[..., SimProcess], signum: int) -> None:
    sim = launch()
    assert sim.stop(signum) == 0
    assert sim.proc.stdout is not None
    assert sim.proc.stdout.read() == ""  # READY was the only stdout line
    assert "Traceback" not in sim.log.read_text()
