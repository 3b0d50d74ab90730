"""The simulated PLC's memory: what each address holds, and how it moves with ``tick``.

``tick = int(elapsed / period)`` since start, as in the Modbus simulator. Writable places
(DB1.DBW2 ``setpoint``, all of DB2, MB40..MB63, the outputs) are never overwritten by the
simulation once a client wrote them. The map is documented in README.md; ``snapshot`` gives
the values by name, for the tests.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = ["DB1_SIZE", "DB2_SIZE", "Memory", "Snapshot", "snapshot"]

DB1_SIZE = 100
DB2_SIZE = 64
MARKERS_SIZE = 64
INPUTS_SIZE = 16
OUTPUTS_SIZE = 16
NAME_LENGTH = 16
"""DB1.DBB34 is a STRING[16]: 18 bytes."""


def _string(text: str, capacity: int) -> bytes:
    data = text.encode("latin-1")
    return bytes((capacity, len(data))) + data.ljust(capacity, b"\x00")


def _real(value: float) -> float:
    """The value as a REAL (float32) holds it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@dataclass(frozen=True)
class Snapshot:
    """What the simulation holds at one tick (``setpoint``: its initial value)."""

    running: bool
    heartbeat: bool
    door_open: bool
    state: int
    setpoint: int
    counter: int
    temperature: float
    energy: float
    int16_constant: int
    word_constant: int
    int32_constant: int
    uint32_constant: int
    int8_constant: int
    name: str
    code: str
    marker_byte: int
    marker_bit: bool
    marker_counter: int
    marker_sine: float
    input_start: bool
    input_stop: bool
    input_word: int
    output_lamp: bool
    output_word: int


def snapshot(tick: int, plc: int = 1) -> Snapshot:
    state = (tick // 50) % 4
    return Snapshot(
        running=state == 1,
        heartbeat=tick % 2 == 1,
        door_open=True,
        state=state,
        setpoint=500 + plc,
        counter=tick + 1000 * plc,
        temperature=_real(60.0 + plc + 5 * math.sin(tick / 20)),
        energy=12345.678 + plc + tick * 0.001,
        int16_constant=-1234,
        word_constant=0xBEEF,
        int32_constant=-123456789,
        uint32_constant=4_000_000_000,
        int8_constant=-12,
        name=f"SIM-S7-{plc}",
        code="ABCDEFGH",
        marker_byte=0x5A,
        marker_bit=tick % 2 == 0,
        marker_counter=tick % 65536,
        marker_sine=_real(math.sin(tick / 10)),
        input_start=True,
        input_stop=False,
        input_word=1234,
        output_lamp=True,
        output_word=4321,
    )


class Memory:
    """The areas the server serves (bytearrays it reads and writes in place)."""

    def __init__(self, plc: int = 1, bulk_bytes: int = 0) -> None:
        self.plc = plc
        self.bulk = bytearray(i & 0xFF for i in range(bulk_bytes))
        """DB100, for load tests: byte i holds i mod 256, DBD0 the tick."""
        self.db1 = bytearray(DB1_SIZE)
        self.db2 = bytearray(DB2_SIZE)
        self.markers = bytearray(MARKERS_SIZE)
        self.inputs = bytearray(INPUTS_SIZE)
        self.outputs = bytearray(OUTPUTS_SIZE)
        struct.pack_into(">h", self.db1, 2, 500 + plc)
        self.outputs[0] = 0b1000_0001
        struct.pack_into(">H", self.outputs, 2, 4321)
        self.update(0)

    def update_bulk(self, tick: int) -> None:
        if len(self.bulk) >= 4:
            struct.pack_into(">I", self.bulk, 0, tick)

    def update(self, tick: int) -> None:
        """Move the simulated values to ``tick`` (not the writable places)."""
        v = snapshot(tick, self.plc)
        db1 = self.db1
        db1[0] = int(v.running) | int(v.heartbeat) << 1 | int(v.door_open) << 3
        db1[1] = v.state
        struct.pack_into(">I", db1, 4, v.counter)
        struct.pack_into(">f", db1, 8, v.temperature)
        struct.pack_into(">d", db1, 12, v.energy)
        constants = (v.int16_constant, v.word_constant, v.int32_constant, v.uint32_constant)
        struct.pack_into(">hHiIb", db1, 20, *constants, v.int8_constant)
        db1[34 : 34 + NAME_LENGTH + 2] = _string(v.name, NAME_LENGTH)
        db1[52:60] = v.code.encode()
        markers = self.markers
        markers[0] = v.marker_byte
        markers[1] = int(v.marker_bit)
        struct.pack_into(">H", markers, 10, v.marker_counter)
        struct.pack_into(">f", markers, 12, v.marker_sine)
        self.inputs[0] = int(v.input_start) | int(v.input_stop) << 1
        struct.pack_into(">H", self.inputs, 2, v.input_word)
