"""One physical link per endpoint: several unit ids behind a gateway or RS-485 line share it.

A Modbus TCP server (and any serial line) answers one request at a time, so all devices on one
link are serialized by one lock, as Home Assistant's ModbusHub does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.transaction import TransactionManager

from connectors.modbus.config import ModbusDeviceConfig, Table
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
        try:
            return callback(data, addr)
        except ModbusIOException:
            return len(data)

    ctx.callback_data = callback_data  # type: ignore[method-assign]


class ModbusLink:
    def __init__(self, device: ModbusDeviceConfig) -> None:
        self.endpoint = device.endpoint
        self.lock = asyncio.Lock()
        self.users = 0
        self.received_bytes = 0
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
                raise ConnectorError(f"cannot connect to {self.endpoint}")
            return True

    async def read(self, table: Table, address: int, count: int, unit: int) -> ModbusPDU:
        """One read request; raises NoResponse on a timeout, Undecodable when only garbage
        came back, ConnectorError if the link is down."""
        async with self.lock:
            return await self.call(self._readers[table], address, count=count, device_id=unit)

    async def call(
        self, request: Callable[..., Awaitable[ModbusPDU]], *args: Any, **kwargs: Any
    ) -> ModbusPDU:
        """One request of any function (``request`` is a method of ``client``), by a caller
        that holds ``lock`` (a read-modify-write holds it across both); errors as ``read``."""
        if not self.client.connected:
            raise ConnectorError(f"connection to {self.endpoint} lost")
        received = self.received_bytes
        try:
            return await request(*args, **kwargs)
        except ConnectionException as exc:
            raise ConnectorError(f"connection to {self.endpoint} lost") from exc
        except ModbusIOException as exc:
            if not self.client.connected:
                raise ConnectorError(f"{self.endpoint} stopped answering") from exc
            garbage = self.received_bytes - received
            if garbage:
                raise Undecodable(
                    f"undecodable answer: {garbage} bytes that are no Modbus answer to this request"
                ) from exc
            raise NoResponse(str(exc)) from exc

    def close(self) -> None:
        self.client.close()


class LinkPool:
    """Hands out one shared link per endpoint and closes it when its last device lets go."""

    def __init__(self) -> None:
        self._links: dict[str, ModbusLink] = {}

    def acquire(self, device: ModbusDeviceConfig) -> ModbusLink:
        link = self._links.get(device.endpoint)
        if link is None:
            link = self._links[device.endpoint] = ModbusLink(device)
        link.users += 1
        return link

    def release(self, link: ModbusLink) -> None:
        link.users -= 1
        if link.users <= 0:
            self._links.pop(link.endpoint, None)
            link.close()
