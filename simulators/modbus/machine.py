"""Address map and value model of the simulated PLC.

Pure functions only: the simulator serves these values and tests compute their expectations
from the same functions, so both share one truth. Every moving value is a function of
``(unit, tick)`` where ``tick = int(elapsed / period)`` counts periods since the simulator started.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from typing import Literal

Table = Literal["holding", "input", "coil", "discrete"]
DType = Literal[
    "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64",
    "string", "registers", "bits",
]  # fmt: skip
Order = Literal["ABCD", "BADC", "CDAB", "DCBA"]
Value = bool | int | float | str | list[int] | list[bool]

BULK_START = 1000
"""First address of the optional bulk holding and input registers (``--bulk-registers``)."""
MAX_BULK_REGISTERS = 0x10000 - BULK_START
STATE_FAULT = 2
ALARM_OVERTEMP = 1 << 0
ALARM_DOOR_OPEN = 1 << 3
ALARM_HEARTBEAT = 1 << 15

_STRUCT_CODES: dict[str, str] = {
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "uint64": "Q",
    "int64": "q",
    "float32": "f",
    "float64": "d",
}


@dataclass(frozen=True, slots=True)
class Point:
    """One named value of the map: where it lives and how it is encoded."""

    name: str
    table: Table
    address: int
    dtype: DType
    count: int = 1
    """Registers (register tables) or bits (coil/discrete tables) the point occupies."""
    order: Order = "ABCD"
    writable: bool = False

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.count

    def encode(self, value: Value) -> list[int]:
        """Register words of ``value`` (register tables)."""
        if self.dtype == "registers":
            assert isinstance(value, list)
            return [int(word) for word in value]
        if self.dtype == "string":
            assert isinstance(value, str)
            return encode_string(value, self.count)
        assert isinstance(value, int | float) and self.dtype != "bits"
        return encode_number(self.dtype, value, self.order)

    def encode_bits(self, value: Value) -> list[bool]:
        """Bits of ``value`` (coil and discrete input tables)."""
        assert self.dtype == "bits"
        bits = value if isinstance(value, list) else [value]
        return [bool(bit) for bit in bits]


POINTS: tuple[Point, ...] = (
    # Holding registers (fc 3)
    Point("state", "holding", 0, "uint16"),
    Point("setpoint", "holding", 1, "int16", writable=True),
    Point("counter", "holding", 2, "uint32", 2),
    Point("temperature", "holding", 4, "float32", 2),
    Point("temperature_cdab", "holding", 6, "float32", 2, "CDAB"),
    Point("temperature_badc", "holding", 8, "float32", 2, "BADC"),
    Point("temperature_dcba", "holding", 10, "float32", 2, "DCBA"),
    Point("energy", "holding", 12, "float64", 4),
    Point("int64_constant", "holding", 16, "int64", 4),
    Point("uint64_constant", "holding", 20, "uint64", 4),
    Point("int16_constant", "holding", 24, "int16"),
    Point("int32_constant", "holding", 25, "int32", 2),
    Point("alarms", "holding", 27, "uint16"),
    Point("reserved", "holding", 28, "registers", 2),
    Point("name", "holding", 30, "string", 10),
    Point("pattern", "holding", 40, "registers", 10),
    # 50..59: hole, no point: reads touching it answer exception 2.
    Point("scratch", "holding", 60, "registers", 10, writable=True),
    # Input registers (fc 4)
    Point("pressure", "input", 0, "float32", 2),
    Point("speed", "input", 2, "uint16"),
    Point("ambient_x10", "input", 3, "int16"),
    Point("flow", "input", 4, "float32", 2, "CDAB"),
    # Coils (fc 1)
    Point("run_command", "coil", 0, "bits", writable=True),
    Point("alarm_reset", "coil", 1, "bits", writable=True),
    Point("heartbeat", "coil", 2, "bits"),
    Point("spare_coils", "coil", 3, "bits", 13, writable=True),
    # Discrete inputs (fc 2)
    Point("door_closed", "discrete", 0, "bits"),
    Point("estop_ok", "discrete", 1, "bits"),
    Point("part_present", "discrete", 2, "bits"),
    Point("overtemp", "discrete", 3, "bits"),
    Point("spare_inputs", "discrete", 4, "bits", 12),
)


@functools.cache
def points(table: Table) -> tuple[Point, ...]:
    """The points of one table in address order."""
    return tuple(sorted((p for p in POINTS if p.table == table), key=lambda p: p.address))


def read_only_ranges(table: Table) -> tuple[tuple[int, int], ...]:
    """Merged ``[start, end)`` ranges of the non-writable points: what the simulator refreshes."""
    ranges: list[tuple[int, int]] = []
    for point in points(table):
        if point.writable:
            continue
        if ranges and ranges[-1][1] == point.address:
            ranges[-1] = (ranges[-1][0], point.end)
        else:
            ranges.append((point.address, point.end))
    return tuple(ranges)


def tick_at(elapsed: float, period: float) -> int:
    """Tick number after ``elapsed`` seconds when the machine advances every ``period`` s."""
    return int(elapsed / period)


def machine_state(unit: int, tick: int) -> int:
    """0 idle, 1 running, 2 fault, 3 maintenance; each state lasts 50 ticks."""
    return (tick // 50 + unit) % 4


def temperature(unit: int, tick: int) -> float:
    """Process temperature in degC."""
    return 60.0 + unit + 5.0 * math.sin(tick / 20)


def alarm_word(unit: int, tick: int) -> int:
    """Alarm bits: overtemp in fault state, door open always, heartbeat toggling each tick."""
    word = ALARM_DOOR_OPEN
    if machine_state(unit, tick) == STATE_FAULT:
        word |= ALARM_OVERTEMP
    if tick % 2:
        word |= ALARM_HEARTBEAT
    return word


def expected_values(unit: int, tick: int) -> dict[str, Value]:
    """Decoded value of every point of ``unit`` at ``tick`` (writable points: initial value)."""
    state = machine_state(unit, tick)
    return {
        "state": state,
        "setpoint": 500 + unit,
        "counter": tick + 1000 * unit,
        "temperature": temperature(unit, tick),
        "temperature_cdab": temperature(unit, tick),
        "temperature_badc": temperature(unit, tick),
        "temperature_dcba": temperature(unit, tick),
        "energy": 12345.678 + unit + tick * 0.001,
        "int64_constant": -1234567890123 - unit,
        "uint64_constant": 18000000000000000000 + unit,
        "int16_constant": -1234,
        "int32_constant": -123456789,
        "alarms": alarm_word(unit, tick),
        "reserved": [0, 0],
        "name": f"SIM-PLC-{unit}",
        "pattern": [0x0100 * i + unit for i in range(10)],
        "scratch": [0] * 10,
        "pressure": 4.0 + 0.5 * math.sin(tick / 10) + unit * 0.1,
        "speed": 1450 + tick % 10 + unit,
        "ambient_x10": 215 + unit,
        "flow": 12.5 + unit,
        "run_command": True,
        "alarm_reset": False,
        "heartbeat": tick % 2 == 1,
        "spare_coils": [False] * 13,
        "door_closed": True,
        "estop_ok": True,
        "part_present": tick % 3 == 0,
        "overtemp": state == STATE_FAULT,
        "spare_inputs": [False] * 12,
    }


def encode_number(dtype: DType, value: int | float, order: Order = "ABCD") -> list[int]:
    """Registers of a number in the given byte order (A = most significant byte)."""
    raw = struct.pack(">" + _STRUCT_CODES[dtype], value)
    if order in ("BADC", "DCBA"):
        raw = bytes(raw[i ^ 1] for i in range(len(raw)))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def encode_string(text: str, count: int) -> list[int]:
    """``count`` registers of ASCII text, two characters per register high byte first."""
    raw = text.encode("ascii").ljust(2 * count, b"\x00")
    if len(raw) > 2 * count:
        raise ValueError(f"{text!r} does not fit in {count} registers")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def register_image(table: Literal["holding", "input"], unit: int, tick: int) -> list[int]:
    """Registers from 0 to the table's last point; addresses without a point read 0."""
    values = expected_values(unit, tick)
    image: list[int] = []
    for point in points(table):
        image.extend([0] * (point.address - len(image)))
        image.extend(point.encode(values[point.name]))
    return image


def bit_image(table: Literal["coil", "discrete"], unit: int, tick: int) -> list[bool]:
    """Bits from 0 to the table's last point."""
    values = expected_values(unit, tick)
    image: list[bool] = []
    for point in points(table):
        image.extend([False] * (point.address - len(image)))
        image.extend(point.encode_bits(values[point.name]))
    return image


def bulk_registers(unit: int, tick: int, address: int, count: int) -> list[int]:
    """Bulk registers ``address..address+count-1``: ``(address + tick*7 + unit) & 0xFFFF``."""
    base = tick * 7 + unit
    return [(a + base) & 0xFFFF for a in range(address, address + count)]
