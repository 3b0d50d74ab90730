"""pymodbus 3.16 server wiring: one SimDevice per unit, values refreshed at read time.

Each unit is a ``SimDevice`` with four separate tables (coils, discrete inputs, holding and
input registers). Writable points are plain datastore cells, so writes stick; the read-only
points are rewritten by the device's ``action`` callback just before pymodbus slices out the
response, for the requested range only, from an image computed once per tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from simulators.modbus.line import LineFaults, char_time, wire_bytes
from simulators.modbus.machine import (
    BULK_START,
    Point,
    Table,
    bit_image,
    bulk_registers,
    points,
    read_only_ranges,
    register_image,
    tick_at,
)

logger = logging.getLogger(__name__)

FramerName = Literal["socket", "rtu"]
READ_FUNCTION_CODES = frozenset({1, 2, 3, 4, 23})
"""Requests whose served values ``--record`` logs (fc 23 is read/write multiple registers)."""
_HOLDING_FCS = frozenset({3, 6, 16, 22, 23})
_COIL_FCS = frozenset({1, 5, 15})
_MASK_WRITE = 22
_REPLUG_CHECK_S = 0.2
_FRAMERS: dict[FramerName, FramerType] = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU}


def _bit_masks(ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``(word, mask)`` pairs covering bit ranges in pymodbus' 16-bits-per-word bit tables."""
    masks: dict[int, int] = {}
    for start, end in ranges:
        for bit in range(start, end):
            masks[bit // 16] = masks.get(bit // 16, 0) | 1 << (bit % 16)
    return tuple(sorted(masks.items()))


def _pack_bits(bits: Sequence[bool]) -> list[int]:
    """Pack bits LSB first into 16-bit words, as the pymodbus datastore stores them."""
    words = [0] * ((len(bits) + 15) // 16)
    for i, bit in enumerate(bits):
        if bit:
            words[i // 16] |= 1 << (i % 16)
    return words


_LIVE_REGISTERS = {table: read_only_ranges(table) for table in ("holding", "input")}
_COIL_READ_ONLY = read_only_ranges("coil")
_COIL_LIVE = _bit_masks(_COIL_READ_ONLY)
_DISCRETE_LIVE = _bit_masks(read_only_ranges("discrete"))


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What the simulator serves and where (see ``python -m simulators.modbus --help``)."""

    host: str = "127.0.0.1"
    port: int = 5020
    units: tuple[int, ...] = (1,)
    bulk_registers: int = 0
    framer: FramerName = "socket"
    record: Path | None = None
    period: float = 0.1
    ports: int = 1
    """Listeners serving the same units, like a PLC with several Ethernet ports: port,
    port+1, ... (all free ones when port is 0). Benchmarks give each device its own link."""
    busy_every: int = 0
    """Answer every Nth read of a busy unit with exception 6 (server device busy); 0: never."""
    busy_units: tuple[int, ...] = ()
    """The units that are busy now and then (all of them when empty)."""
    mask_write: bool = True
    """Serve fc 22 (mask write register); False answers it with exception 1."""
    serial: str | None = None
    """Serve Modbus RTU on this serial device (one end of a pseudo-terminal pair) instead of
    TCP. Unknown units stay silent, as absent slaves on a bus do."""
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    garble_every: int = 0
    """Serial: flip a CRC byte of every Nth answer of a faulty unit; 0: never."""
    truncate_every: int = 0
    """Serial: cut every Nth answer of a faulty unit short; 0: never."""
    fault_units: tuple[int, ...] = ()
    """The units the two faults apply to (all of them when empty)."""


class Clock:
    """Tick source shared by all units: ``int(elapsed / period)`` since construction."""

    def __init__(self, period: float) -> None:
        self._start = time.monotonic()
        self._period = period

    def tick(self) -> int:
        """Current tick."""
        return tick_at(time.monotonic() - self._start, self._period)


class MachineUnit:
    """One simulated machine (unit id) backed by a pymodbus ``SimDevice``."""

    def __init__(self, unit: int, clock: Clock, bulk_registers: int) -> None:
        self.unit = unit
        self._clock = clock
        self._bulk_count = bulk_registers
        self._bulk_end = BULK_START + bulk_registers
        self._images: dict[Table, tuple[int, list[int]]] = {}

    def _image(self, table: Table, tick: int) -> list[int]:
        """Words of a table at ``tick`` (bit tables packed), computed once per tick and table."""
        cached = self._images.get(table)
        if cached is not None and cached[0] == tick:
            return cached[1]
        if table == "holding" or table == "input":
            image = register_image(table, self.unit, tick)
        else:
            image = _pack_bits(bit_image(table, self.unit, tick))
        self._images[table] = (tick, image)
        return image

    def device(self) -> SimDevice:
        """The pymodbus device: separate tables, points laid out from the current values."""
        tick = self._clock.tick()
        holding = [_register_data(p, self._image("holding", tick)) for p in points("holding")]
        inputs = [_register_data(p, self._image("input", tick)) for p in points("input")]
        if self._bulk_count:
            for table in (holding, inputs):
                table.append(
                    SimData(
                        BULK_START,
                        count=self._bulk_count,
                        values=0,
                        datatype=DataType.REGISTERS,
                        readonly=True,
                    )
                )
        coils = bit_image("coil", self.unit, tick)
        discrete = bit_image("discrete", self.unit, tick)
        return SimDevice(
            id=self.unit,
            simdata=(
                [SimData(0, values=coils, datatype=DataType.BITS)],
                [SimData(0, values=discrete, datatype=DataType.BITS)],
                holding,
                inputs,
            ),
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """SimDevice hook, called before pymodbus serves a request from ``registers``.

        For reads it writes the live values of the requested range into ``registers`` in place.
        For the bit tables ``registers`` holds 16 bits per word and ``count`` is in words, so
        the (one-word) live bits are refreshed whole. Writes are refused on read-only coils;
        read-only registers are refused by the datastore itself.
        """
        if set_values is not None:
            if function_code in _COIL_FCS and _overlaps(
                _COIL_READ_ONLY, address, address + len(set_values)
            ):
                return ExcCodes.ILLEGAL_ADDRESS
            return None
        tick = self._clock.tick()
        if function_code in _HOLDING_FCS:
            self._fill(registers, start_address, address, count, "holding", tick)
        elif function_code == 4:
            self._fill(registers, start_address, address, count, "input", tick)
        elif function_code in _COIL_FCS:
            _merge_words(registers, start_address, self._image("coil", tick), _COIL_LIVE)
        else:
            _merge_words(registers, start_address, self._image("discrete", tick), _DISCRETE_LIVE)
        return None

    def _fill(
        self,
        registers: list[int],
        start_address: int,
        address: int,
        count: int,
        table: Literal["holding", "input"],
        tick: int,
    ) -> None:
        """Write the live registers within ``[address, address+count)`` into the datastore."""
        end = address + count
        for lo, hi in _LIVE_REGISTERS[table]:
            first, last = max(lo, address), min(hi, end)
            if first < last:
                image = self._image(table, tick)
                registers[first - start_address : last - start_address] = image[first:last]
        first, last = max(BULK_START, address), min(self._bulk_end, end)
        if first < last:
            registers[first - start_address : last - start_address] = bulk_registers(
                self.unit, tick, first, last - first
            )


def _register_data(point: Point, image: list[int]) -> SimData:
    """Datastore block of one register point; read-only points refuse writes (exception 2)."""
    return SimData(
        point.address,
        values=image[point.address : point.end],
        datatype=DataType.REGISTERS,
        readonly=not point.writable,
    )


def _overlaps(ranges: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    """Whether ``[start, end)`` touches any of ``ranges``."""
    return any(lo < end and start < hi for lo, hi in ranges)


def _merge_words(
    registers: list[int], start_word: int, image: list[int], masks: Sequence[tuple[int, int]]
) -> None:
    """Overwrite the masked bits of packed bit words with the image's."""
    for word, mask in masks:
        index = word - start_word
        registers[index] = registers[index] & ~mask | image[word] & mask


class Recorder:
    """Appends one JSON line per served read request, flushed per line."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)

    def record(
        self, unit: int, function_code: int, address: int, values: list[int] | list[bool]
    ) -> None:
        """Log what one read served."""
        line = {
            "t_ns": time.time_ns(),
            "unit": unit,
            "fc": function_code,
            "address": address,
            "count": len(values),
            "values": values,
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class MachineCore(SimCore):
    """pymodbus' SimCore plus unknown-unit answers and the optional read recording.

    Plain SimCore falls back to device 0 for unknown ids and, without one, fails with a
    KeyError (exception 4 and a traceback in the log). Raising ``NoSuchIdException`` makes
    the server answer exception 0x0B (gateway target failed to respond), like a TCP gateway.
    """

    def __init__(
        self,
        devices: list[SimDevice],
        recorder: Recorder | None,
        busy_every: int = 0,
        busy_units: Iterable[int] = (),
        mask_write: bool = True,
        char_time: float = 0.0,
    ) -> None:
        super().__init__(devices)
        self._char_time = char_time
        """Seconds per character on the emulated serial line; 0 on TCP."""
        self._recorder = recorder
        self._mask_write = mask_write
        self._busy_every = busy_every
        self._busy_units = frozenset(busy_units)
        self._reads: dict[int, int] = {}

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        """Serve values; record them when recording and the request is a read. A busy unit
        answers every ``busy_every``-th read with exception 6."""
        if device_id not in self.devices:
            raise NoSuchIdException(f"unit {device_id}")
        if func_code == _MASK_WRITE and not self._mask_write:
            return ExcCodes.ILLEGAL_FUNCTION
        if self._busy_every and (not self._busy_units or device_id in self._busy_units):
            reads = self._reads[device_id] = self._reads.get(device_id, 0) + 1
            if reads % self._busy_every == 0:
                return ExcCodes.DEVICE_BUSY
        if self._char_time:
            await asyncio.sleep(wire_bytes(func_code, count) * self._char_time)
        values = await super().async_getValues(device_id, func_code, address, count)
        recorder = self._recorder
        if recorder is not None and func_code in READ_FUNCTION_CODES and isinstance(values, list):
            recorder.record(device_id, func_code, address, values)
        return values

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Write values of a known unit."""
        if device_id not in self.devices:
            raise NoSuchIdException(f"unit {device_id}")
        if self._char_time:
            await asyncio.sleep(wire_bytes(func_code, len(values)) * self._char_time)
        return await super().async_setValues(device_id, func_code, address, values)


def _id_ranges(ids: Iterable[int]) -> str:
    """Compact text of ids: ``1-100`` or ``1-3,7``."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class Simulator:
    """The Modbus TCP server of all units."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        clock = Clock(config.period)
        self.units = {u: MachineUnit(u, clock, config.bulk_registers) for u in config.units}
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self.faults: LineFaults | None = None
        self._replug: asyncio.Task[None] | None = None
        self._recorder: Recorder | None = None

    async def start(self) -> list[int]:
        """Listen and return the bound ports (the real ones when ``config.port`` is 0); on a
        serial line, open it and return no ports."""
        devices = [unit.device() for unit in self.units.values()]
        if self.config.record is not None:
            self._recorder = Recorder(self.config.record)
        # Each server builds a plain SimCore from the devices; all share ours instead (built
        # once more: cheap, and it keeps to SimCore's public constructor).
        config = self.config
        serial = config.serial is not None
        core = MachineCore(
            devices,
            self._recorder,
            config.busy_every,
            config.busy_units,
            config.mask_write,
            char_time(config.baudrate, config.parity, config.stopbits) if serial else 0.0,
        )
        if config.serial is not None:
            await self._open_serial(config.serial, devices, core)
            return []
        ports: list[int] = []
        for index in range(self.config.ports):
            wanted = self.config.port + index if self.config.port else 0
            server = ModbusTcpServer(
                devices, framer=_FRAMERS[self.config.framer], address=(self.config.host, wanted)
            )
            self._servers.append(server)
            server.context = core
            await server.serve_forever(background=True)
            listener = server.transport
            assert isinstance(listener, asyncio.Server)
            ports.append(listener.sockets[0].getsockname()[1])
        logger.info(
            "serving units %s on %s:%s (framer %s, %d bulk registers, period %ss%s)",
            _id_ranges(self.units),
            self.config.host,
            ",".join(map(str, ports)),
            self.config.framer,
            self.config.bulk_registers,
            self.config.period,
            f", recording to {self.config.record}" if self.config.record else "",
        )
        return ports

    async def _open_serial(self, path: str, devices: list[SimDevice], core: MachineCore) -> None:
        config = self.config
        self.faults = LineFaults(config.garble_every, config.truncate_every, config.fault_units)
        await self._serve_serial(path, devices, core)
        self._replug = asyncio.create_task(self._follow_replug(path, devices, core))

    async def _follow_replug(self, path: str, devices: list[SimDevice], core: MachineCore) -> None:
        """pymodbus' serial server does not reopen a port that went away (the virtual line
        unplugged: socat stopped). Open the path again until it holds a terminal (socat
        started again)."""
        while True:
            await asyncio.sleep(_REPLUG_CHECK_S)
            if any(server.active_connections for server in self._servers):
                continue
            if not await asyncio.to_thread(Path(path).exists):
                continue
            while self._servers:
                await self._servers.pop().shutdown()  # type: ignore[no-untyped-call]
            try:
                await self._serve_serial(path, devices, core)
            except (OSError, RuntimeError) as exc:
                logger.debug("cannot open %s again yet: %s", path, exc)
            else:
                logger.info("%s: serving it again", path)

    async def _serve_serial(self, path: str, devices: list[SimDevice], core: MachineCore) -> None:
        config = self.config
        server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=path,
            baudrate=config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
            ignore_missing_devices=True,
            trace_packet=self.faults,
        )
        self._servers.append(server)
        server.context = core
        await server.serve_forever(background=True)
        logger.info(
            "serving units %s on %s (RTU, %d baud, %s%d)",
            _id_ranges(self.units),
            path,
            config.baudrate,
            config.parity,
            config.stopbits,
        )

    async def stop(self) -> None:
        """Close the listeners and all client connections, then the record file."""
        if self._replug is not None:
            self._replug.cancel()
        while self._servers:
            server = self._servers.pop()
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in 3.16
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
