"""Configuration of Modbus devices, their tag groups and tags (pydantic v2, strict keys)."""

from __future__ import annotations

import enum
from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.tags import TagBase, ValueType

__all__ = [
    "ByteOrder",
    "DataType",
    "ModbusDeviceConfig",
    "ModbusGroup",
    "ModbusProfile",
    "ModbusTag",
    "Table",
    "register_count",
]

MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


class Table(enum.StrEnum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING_REGISTER = "holding_register"
    INPUT_REGISTER = "input_register"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)


class DataType(enum.StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class ByteOrder(enum.StrEnum):
    """Order of the bytes A (most significant) .. D as they arrive in the registers."""

    ABCD = "ABCD"
    """Big endian: high word first, high byte first (the Modbus norm)."""
    BADC = "BADC"
    """Bytes swapped within each word."""
    CDAB = "CDAB"
    """Words swapped: low word first (common in PLCs)."""
    DCBA = "DCBA"
    """Little endian."""


_REGISTERS = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


class ModbusTag(TagBase):
    table: Table = Table.HOLDING_REGISTER
    address: int = Field(ge=0, le=65536, description="Register or bit address (see address_base)")
    data_type: DataType = DataType.UINT16
    byte_order: ByteOrder = ByteOrder.ABCD
    bit: int | None = Field(
        default=None, ge=0, le=15, description="For bool in a register: bit 0 (LSB) .. 15"
    )
    length: int | None = Field(
        default=None, ge=1, le=MAX_READ_REGISTERS, description="Registers of a string"
    )
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.table.is_bits:
            if self.data_type is not DataType.BOOL:
                raise ValueError(f"a {self.table.value} tag has data_type bool")
            if self.bit is not None:
                raise ValueError("'bit' is for bool tags in registers, not coils or inputs")
        elif self.data_type is DataType.BOOL and self.bit is None:
            raise ValueError("a bool tag in a register needs 'bit' (0..15)")
        elif self.data_type is not DataType.BOOL and self.bit is not None:
            raise ValueError("'bit' is only for data_type bool")
        if (self.data_type is DataType.STRING) != (self.length is not None):
            raise ValueError("'length' (in registers) is required for strings and only for them")
        if self.data_type in (DataType.BOOL, DataType.STRING) and (self.scale, self.offset) != (
            1.0,
            0.0,
        ):
            raise ValueError(f"scale and offset do not apply to {self.data_type.value}")
        if self.deadband is not None and self.data_type in (DataType.BOOL, DataType.STRING):
            raise ValueError(f"a deadband does not apply to {self.data_type.value}; use heartbeat")
        return self

    @property
    def size(self) -> int:
        """Registers (or bits, for coil and discrete input tables) this tag occupies."""
        return register_count(self)

    @property
    def value_type(self) -> ValueType:
        if (self.scale, self.offset) != (1.0, 0.0):
            return ValueType.FLOAT64  # a scaled integer is a float in engineering units
        return ValueType(self.data_type.value)


def register_count(tag: ModbusTag) -> int:
    if tag.table.is_bits or tag.data_type is DataType.BOOL:
        return 1
    if tag.data_type is DataType.STRING:
        assert tag.length is not None
        return tag.length
    return _REGISTERS[tag.data_type]


class ModbusGroup(GroupBase):
    """Tags polled together at one interval (the poll period, in seconds)."""

    priority: int = Field(
        default=5,
        ge=1,
        le=9,
        description="On a shared line, waiting polls of priority 1 go first, 9 last",
    )
    tags: list[ModbusTag] = Field(min_length=1)


class ModbusProfile(ProfileBase):
    type: Literal["modbus"]
    groups: list[ModbusGroup] = Field(min_length=1)


class ModbusDeviceConfig(DeviceBase):
    type: Literal["modbus"]
    transport: Literal["tcp", "rtu_over_tcp", "serial"] = "tcp"
    host: str | None = Field(default=None, min_length=1, max_length=253, examples=["10.0.0.17"])
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = Field(
        default=None, description="e.g. /dev/ttyUSB0 (transport serial)"
    )
    baudrate: int = Field(
        default=19200,
        ge=300,
        le=4_000_000,
        description="Of the serial line (for rtu_over_tcp: the converter's, to plan the line)",
    )
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id")
    timeout: float = Field(default=1.0, gt=0, le=60, description="Seconds to wait for an answer")
    silent_retry: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="On a shared line: seconds before a unit that answered nothing is asked"
        " again, so that it costs the other units one timeout per period, not per poll",
    )
    address_base: Literal[0, 1] = Field(
        default=0, description="1 if the device's documentation numbers registers from 1"
    )
    max_registers_per_read: int = Field(default=MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    max_bits_per_read: int = Field(default=MAX_READ_BITS, ge=1, le=MAX_READ_BITS)
    max_gap: int = Field(
        default=16, ge=0, le=MAX_READ_REGISTERS, description="Unused registers read through"
    )
    groups: list[ModbusGroup] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.transport == "serial":
            if self.serial_port is None:
                raise ValueError("transport serial needs 'serial_port'")
        elif self.host is None:
            raise ValueError(f"transport {self.transport} needs 'host'")
        return self

    @property
    def address(self) -> str:
        where = self.serial_port if self.transport == "serial" else f"{self.host}:{self.port}"
        return f"{where} · unit {self.unit}"

    @property
    def endpoint(self) -> str:
        if self.transport == "serial":
            return f"serial://{self.serial_port}"
        return f"{self.transport}://{self.host}:{self.port}"
