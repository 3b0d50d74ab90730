"""One physical link per endpoint: several unit ids behind a gateway or RS-485 line share it.

A Modbus TCP server (and any serial line) answers one request at a time, so all devices on one
link take turns (connectors/modbus/line.py), as Home Assistant's ModbusHub does. Each request
waits for its own unit's timeout. On a serial line the link also keeps the silence between
frames the baud rate demands and tells a garbled answer (CRC error) from one cut short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.transaction import TransactionManager

from connectors.modbus.config import ModbusDeviceConfig, Table
from connectors.modbus.line import LineLoad, LineTurns, answer_bytes, char_time, frame_gap
from gateway.errors import ConnectorError

__all__ = ["LinkPool", "ModbusLink", "NoResponse", "Undecodable", "exception_reason"]

log = logging.getLogger(__name__)


_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_reason(code: int) -> str:
    return f"modbus exception {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})"


class NoResponse(Exception):
    """The device did not answer one request in time; the link itself may still be fine."""


class Undecodable(Exception):
    """Something answered, but not with a Modbus frame pymodbus could decode."""


def _drop_undecodable(ctx: TransactionManager, link: ModbusLink) -> None:
    """pymodbus raises from inside the protocol's ``data_received`` when a frame cannot be
    decoded (a function code it does not know): asyncio then logs a traceback that names no
    device and closes the connection. Drop such data instead. Every byte received is counted
    on the link, so a request that times out although bytes came back is reported as answered
    with something undecodable (or not matching it), not as unanswered."""
    callback = ctx.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        link.received_bytes += len(data)
        if link.rtu and len(link.answer) < _KEPT_ANSWER_BYTES:
            link.answer += data
        try:
            return callback(data, addr)
        except ModbusIOException:
            return len(data)

    ctx.callback_data = callback_data  # type: ignore[method-assign]


_KEPT_ANSWER_BYTES = 512
"""Bytes of one answer kept to tell a CRC error from a frame cut short (the longest RTU frame
is 256)."""


def _rtu_fault(answer: bytes, expected: int | None) -> str | None:
    """Why an RTU answer was dropped: "crc" for a whole frame that fails its CRC, "partial"
    for one shorter than the answer to the request; None if it is neither."""
    if len(answer) < 4:
        return "partial" if answer else None
    length = expected if expected is not None and len(answer) >= expected else len(answer)
    crc = int.from_bytes(answer[length - 2 : length], "big")
    if FramerRTU.check_CRC(answer[: length - 2], crc):
        return None
    if expected is not None and len(answer) < expected:
        return "partial"
    return "crc"


class ModbusLink:
    def __init__(self, device: ModbusDeviceConfig, load: LineLoad | None = None) -> None:
        """``load`` carries the line's counters over from the link before this one."""
        self.endpoint = device.endpoint
        self.lock = LineTurns()
        """Held for one request, or a read-modify-write; polls take it by priority."""
        self.users = 0
        self.received_bytes = 0
        self.answer = bytearray()
        """What came back for the current request (up to _KEPT_ANSWER_BYTES)."""
        self.rtu = device.transport != "tcp"
        self.serial = device.transport == "serial"
        self.char_s = char_time(device.baudrate, device.parity, device.stopbits)
        self.gap_s = frame_gap(device.baudrate, self.char_s) if self.serial else 0.0
        self._quiet_at = 0.0
        """When the line has been silent long enough for the next frame (monotonic)."""
        self.load = load or LineLoad(self.endpoint, device.baudrate if self.rtu else None)
        # reconnect_delay=0: pymodbus must not reconnect behind our back; supervisors do it
        # with backoff. retries=0: a timeout marks that request's tags bad right away.
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if device.transport == "serial":
            assert device.serial_port is not None
            self.client = AsyncModbusSerialClient(
                device.serial_port,
                framer=FramerType.RTU,
                baudrate=device.baudrate,
                parity=device.parity,
                stopbits=device.stopbits,
                timeout=device.timeout,
                retries=0,
                reconnect_delay=0,
            )
        else:
            assert device.host is not None
            self.client = AsyncModbusTcpClient(
                device.host,
                port=device.port,
                framer=FramerType.RTU if device.transport == "rtu_over_tcp" else FramerType.SOCKET,
                timeout=device.timeout,
                retries=0,
                reconnect_delay=0,
            )
        _drop_undecodable(self.client.ctx, self)
        self._readers = {
            Table.COIL: self.client.read_coils,
            Table.DISCRETE_INPUT: self.client.read_discrete_inputs,
            Table.HOLDING_REGISTER: self.client.read_holding_registers,
            Table.INPUT_REGISTER: self.client.read_input_registers,
        }

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def ensure_connected(self) -> bool:
        """Connect unless connected; True when a new connection was made."""
        async with self.lock:
            if self.client.connected:
                return False
            if not await self.client.connect():
                raise ConnectorError(
                    f"cannot {'open' if self.serial else 'connect to'} {self.endpoint}"
                )
            self.load.opened += 1
            return True

    async def read(
        self,
        table: Table,
        address: int,
        count: int,
        unit: int,
        wait_s: float,
        priority: int,
    ) -> ModbusPDU:
        """One read request, when the line is ours; raises NoResponse on a timeout,
        Undecodable when only garbage came back, ConnectorError if the link is down."""
        async with self.lock.at(priority):
            return await self.call(
                self._readers[table],
                address,
                count=count,
                device_id=unit,
                wait_s=wait_s,
                expected=answer_bytes(table.is_bits, count) if self.rtu else None,
            )

    async def call(
        self,
        request: Callable[..., Awaitable[ModbusPDU]],
        *args: Any,
        wait_s: float,
        expected: int | None = None,
        **kwargs: Any,
    ) -> ModbusPDU:
        """One request of any function (``request`` is a method of ``client``), by a caller
        that holds ``lock`` (a read-modify-write holds it across both), waiting ``wait_s``
        seconds for the answer (``expected`` bytes long, if known); errors as ``read``."""
        if not self.client.connected:
            raise ConnectorError(f"connection to {self.endpoint} lost")
        if self.gap_s:
            quiet = self._quiet_at - time.monotonic()
            if quiet > 0:
                await asyncio.sleep(quiet)
        # One request at a time per link, so the client's timeout can be this unit's own.
        self.client.ctx.comm_params.timeout_connect = wait_s
        received = self.received_bytes
        self.answer.clear()
        # A line's time is accounted; a TCP link's would be work per request for nothing.
        started = time.monotonic() if self.rtu else 0.0
        try:
            return await request(*args, **kwargs)
        except ConnectionException as exc:
            raise ConnectorError(f"connection to {self.endpoint} lost") from exc
        except ModbusIOException as exc:
            if not self.client.connected:
                raise ConnectorError(f"{self.endpoint} stopped answering") from exc
            garbage = self.received_bytes - received
            if garbage:
                raise Undecodable(self._undecodable(garbage, expected)) from exc
            self.load.timeouts += 1
            raise NoResponse(str(exc)) from exc
        finally:
            if self.rtu:
                finished = time.monotonic()
                self._quiet_at = finished + self.gap_s
                self.load.busy(finished - started + self.gap_s, kwargs["device_id"])

    def _undecodable(self, garbage: int, expected: int | None) -> str:
        fault = _rtu_fault(bytes(self.answer), expected) if self.rtu else None
        if fault == "crc":
            self.load.crc_errors += 1
            return f"CRC error: a {garbage}-byte answer failed its check"
        if fault == "partial":
            self.load.partial_frames += 1
            of = f" of {expected}" if expected is not None else ""
            return f"partial frame: {garbage}{of} bytes, then silence"
        return f"undecodable answer: {garbage} bytes that are no Modbus answer to this request"

    def close(self) -> None:
        self.client.close()


class LinkPool:
    """Hands out one shared link per endpoint and closes it when its last device lets go."""

    def __init__(self) -> None:
        self._links: dict[str, ModbusLink] = {}
        self._loads: dict[str, LineLoad] = {}
        """Of RTU lines, kept across reconnects so that their counters add up."""

    def acquire(self, device: ModbusDeviceConfig) -> ModbusLink:
        link = self._links.get(device.endpoint)
        if link is None:
            link = self._links[device.endpoint] = ModbusLink(
                device, self._loads.get(device.endpoint)
            )
            if link.rtu:
                self._loads[device.endpoint] = link.load
        link.users += 1
        return link

    def release(self, link: ModbusLink) -> None:
        link.users -= 1
        if link.users <= 0:
            self._links.pop(link.endpoint, None)
            link.close()
