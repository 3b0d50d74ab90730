"""Writing tags: coils with FC5/FC15, registers with FC6/FC16, a bit of a holding register with
FC22 (mask write) where the device has it, else read-modify-write with the link held across
both requests. Each request holds the link's lock, so writes take their turn with the polls of
every device on the link, never concurrently.

A write is sent once. It is repeated only when the device answered busy (exception 6: it did
not happen); a timeout leaves it unknown whether it was applied, and it is never repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.pdu import ModbusPDU

from connectors.modbus.config import DataType, ModbusDeviceConfig, ModbusTag, Table
from connectors.modbus.decode import decode_value
from connectors.modbus.encode import encode_value
from connectors.modbus.link import ModbusLink, NoResponse, Undecodable, exception_reason
from gateway.errors import ConnectorError
from gateway.protocols import TagWrite, WriteOutcome
from gateway.reading import Value

__all__ = ["ModbusWriter"]

log = logging.getLogger(__name__)

_Function = Callable[..., Awaitable[ModbusPDU]]
_ILLEGAL_FUNCTION = 1
_BUSY = 6
_BUSY_DELAY = 0.02


class _Refused(Exception):
    """The device answered with an exception: the request did not happen."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the device refused it: {exception_reason(code)}")
        self.code = code


class ModbusWriter:
    def __init__(self, device: ModbusDeviceConfig) -> None:
        self.device = device
        self.mask_write: bool | None = None
        """Whether the device has FC22 (None: not tried yet)."""

    async def write(
        self, link: ModbusLink, writes: Sequence[TagWrite], verify: bool
    ) -> list[WriteOutcome]:
        outcomes = []
        for write in writes:
            tag = write.tag
            assert isinstance(tag, ModbusTag)
            outcome = await self._write_one(link, tag, write.value, verify)
            outcomes.append(outcome)
            if not outcome.written:
                break
        return outcomes

    async def _write_one(
        self, link: ModbusLink, tag: ModbusTag, value: Value, verify: bool
    ) -> WriteOutcome:
        outcome = WriteOutcome(tag.name, written=False)
        if tag.table in (Table.DISCRETE_INPUT, Table.INPUT_REGISTER):
            outcome.error = f"a {tag.table.value} is read-only in Modbus"
            return outcome
        try:
            if tag.table is Table.COIL or tag.data_type is DataType.BOOL:
                if not isinstance(value, bool):
                    raise ValueError(f"{value!r} is not true or false")
                registers: list[int] | None = None
            else:
                registers = encode_value(tag, value)  # type: ignore[arg-type]
        except ValueError as exc:
            outcome.error = str(exc)
            return outcome
        try:
            outcome.before = await self._read_tag(link, tag)
            if tag.table is Table.COIL:
                assert isinstance(value, bool)
                outcome.raw, outcome.method = f"coil {tag.address} = {int(value)}", "FC5"
                outcome.applied = None
                await self._request(link, link.client.write_coil, self._address(tag), value)
            elif registers is None:
                assert isinstance(value, bool)
                await self._write_bit(link, tag, value, outcome)
            else:
                address = self._address(tag)
                outcome.raw = f"registers {tag.address}: {registers}"
                outcome.applied = None
                if len(registers) == 1:
                    outcome.method = "FC6"
                    await self._request(link, link.client.write_register, address, registers[0])
                else:
                    outcome.method = "FC16"
                    await self._request(link, link.client.write_registers, address, registers)
            outcome.written, outcome.applied = True, True
            if verify:
                outcome.read_back = await self._read_tag(link, tag)
        except _Refused as exc:
            outcome.applied = False
            outcome.error = str(exc)
        except NoResponse:
            outcome.error = (
                f"no response within {self.device.timeout:g} s: it may have been applied;"
                " not retried"
            )
        except (Undecodable, ConnectorError) as exc:
            outcome.error = f"{exc}: it may have been applied; not retried"
        return outcome

    async def _write_bit(
        self, link: ModbusLink, tag: ModbusTag, value: bool, outcome: WriteOutcome
    ) -> None:
        """One bit of a holding register, the other 15 left as they are."""
        assert tag.bit is not None
        address, mask = self._address(tag), 1 << tag.bit
        if self.mask_write is not False:
            outcome.method = "FC22 mask write"
            outcome.raw = f"register {tag.address} bit {tag.bit} = {int(value)}"
            outcome.applied = None
            try:
                await self._request(
                    link,
                    link.client.mask_write_register,
                    address=address,
                    and_mask=0xFFFF ^ mask,
                    or_mask=mask if value else 0,
                )
                self.mask_write = True
                return
            except _Refused as exc:
                if self.mask_write is None and exc.code == _ILLEGAL_FUNCTION:
                    log.info(
                        "%s: no FC22 (mask write); bits are written by read-modify-write",
                        self.device.id,
                    )
                    self.mask_write = False
                else:
                    raise
        outcome.method = "read-modify-write (FC3 + FC6, the link held)"
        async with link.lock:  # nobody writes the register between our read and our write
            response = await self._call(link, link.client.read_holding_registers, address, count=1)
            current = response.registers[0]
            new = (current | mask) if value else (current & ~mask & 0xFFFF)
            outcome.raw = f"register {tag.address}: {current} -> {new}"
            outcome.applied = None
            await self._call(link, link.client.write_register, address, new)

    async def _read_tag(self, link: ModbusLink, tag: ModbusTag) -> Value:
        address = self._address(tag)
        if tag.table is Table.COIL:
            response = await self._request(link, link.client.read_coils, address, count=1)
            return bool(response.bits[0])
        response = await self._request(
            link, link.client.read_holding_registers, address, count=tag.size
        )
        return decode_value(tag, response.registers)

    async def _request(
        self, link: ModbusLink, function: _Function, *args: object, **kw: Any
    ) -> ModbusPDU:
        async with link.lock:
            return await self._call(link, function, *args, **kw)

    async def _call(
        self, link: ModbusLink, function: _Function, *args: object, **kw: Any
    ) -> ModbusPDU:
        """One request (the caller holds the lock), repeated only while the device answers
        busy: then it did not happen."""
        for attempt in range(self.device.busy_retries + 1):
            response = await link.call(
                function, *args, device_id=self.device.unit, wait_s=self.device.timeout, **kw
            )
            if not response.isError():
                return response
            code = int(response.exception_code)
            if code != _BUSY or attempt == self.device.busy_retries:
                raise _Refused(code)
            await asyncio.sleep(_BUSY_DELAY * (attempt + 1))
        raise AssertionError("unreachable")

    def _address(self, tag: ModbusTag) -> int:
        return tag.address - self.device.address_base
