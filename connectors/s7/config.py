"""Configuration of Siemens S7 devices, their tag groups and tags (pydantic v2, strict keys)."""

from __future__ import annotations

import enum
from functools import cached_property
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from connectors.s7.address import S7Address, parse_address
from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.tags import TagBase, ValueType

__all__ = ["S7DataType", "S7DeviceConfig", "S7Group", "S7Profile", "S7Tag"]

MAX_STRING = 254
"""An S7 STRING holds at most 254 characters (plus its two length bytes)."""


class S7DataType(enum.StrEnum):
    BOOL = "bool"
    INT8 = "int8"
    """SINT"""
    UINT8 = "uint8"
    """BYTE, USINT"""
    INT16 = "int16"
    """INT"""
    UINT16 = "uint16"
    """WORD, UINT"""
    INT32 = "int32"
    """DINT"""
    UINT32 = "uint32"
    """DWORD, UDINT"""
    FLOAT32 = "float32"
    """REAL"""
    FLOAT64 = "float64"
    """LREAL (8 bytes from a D address)"""
    STRING = "string"
    """S7 STRING: max length, actual length, then the characters"""
    CHARS = "chars"
    """ARRAY OF CHAR: exactly ``length`` bytes"""


_BYTES = {
    S7DataType.BOOL: 1,
    S7DataType.INT8: 1,
    S7DataType.UINT8: 1,
    S7DataType.INT16: 2,
    S7DataType.UINT16: 2,
    S7DataType.INT32: 4,
    S7DataType.UINT32: 4,
    S7DataType.FLOAT32: 4,
    S7DataType.FLOAT64: 8,
}
_FITS = {
    "X": (S7DataType.BOOL,),
    "B": (S7DataType.UINT8, S7DataType.INT8, S7DataType.STRING, S7DataType.CHARS),
    "W": (S7DataType.UINT16, S7DataType.INT16),
    "D": (S7DataType.UINT32, S7DataType.INT32, S7DataType.FLOAT32, S7DataType.FLOAT64),
}
"""The types an address of each size letter may hold; the first is the default."""
_VALUE_TYPES = {
    S7DataType.BOOL: ValueType.BOOL,
    S7DataType.INT8: ValueType.INT16,
    S7DataType.UINT8: ValueType.UINT16,
    S7DataType.INT16: ValueType.INT16,
    S7DataType.UINT16: ValueType.UINT16,
    S7DataType.INT32: ValueType.INT32,
    S7DataType.UINT32: ValueType.UINT32,
    S7DataType.FLOAT32: ValueType.FLOAT32,
    S7DataType.FLOAT64: ValueType.FLOAT64,
    S7DataType.STRING: ValueType.STRING,
    S7DataType.CHARS: ValueType.STRING,
}


class S7Tag(TagBase):
    address: str = Field(description="e.g. DB1.DBX0.3, DB1.DBW2, DB1.DBD4, MW10, M10.1, IW4, Q0.0")
    data_type: S7DataType | None = Field(
        default=None, description="Default from the address: X bool, B uint8, W uint16, D uint32"
    )
    length: int | None = Field(
        default=None, ge=1, le=MAX_STRING, description="Characters of a string or chars"
    )
    encoding: Literal["ascii", "latin-1", "utf-8"] = "latin-1"
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)

    @field_validator("address")
    @classmethod
    def _valid_address(cls, address: str) -> str:
        return str(parse_address(address))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        location = self.location
        fits = _FITS[location.size]
        data_type = self.type
        if data_type not in fits:
            if data_type is S7DataType.BOOL:
                raise ValueError(f"a bool needs a bit address (X), e.g. DB1.DBX0.3, not {location}")
            allowed = ", ".join(t.value for t in fits)
            raise ValueError(
                f"{location} is a {_SIZE_NAMES[location.size]} address: its data_type is one of"
                f" {allowed}, not {data_type.value}"
            )
        textual = data_type in (S7DataType.STRING, S7DataType.CHARS)
        if textual != (self.length is not None):
            raise ValueError(
                "'length' (characters) is required for string and chars, and only for them"
            )
        if data_type in (S7DataType.BOOL, S7DataType.STRING, S7DataType.CHARS) and (
            self.scale,
            self.offset,
        ) != (1.0, 0.0):
            raise ValueError(f"scale and offset do not apply to {data_type.value}")
        if self.deadband is not None and (data_type is S7DataType.BOOL or textual):
            raise ValueError(f"a deadband does not apply to {data_type.value}; use heartbeat")
        return self

    @cached_property
    def location(self) -> S7Address:
        """The parsed address (parsed once: the planner, codec and writes all ask for it)."""
        return parse_address(self.address)

    @property
    def type(self) -> S7DataType:
        """The data type, given or the address's default."""
        return self.data_type or _FITS[self.location.size][0]

    @property
    def size(self) -> int:
        """Bytes the value occupies from its address's byte."""
        data_type = self.type
        if data_type is S7DataType.STRING:
            assert self.length is not None
            return self.length + 2
        if data_type is S7DataType.CHARS:
            assert self.length is not None
            return self.length
        return _BYTES[data_type]

    @property
    def value_type(self) -> ValueType:
        if (self.scale, self.offset) != (1.0, 0.0):
            return ValueType.FLOAT64
        return _VALUE_TYPES[self.type]


_SIZE_NAMES = {"X": "bit", "B": "byte", "W": "word", "D": "double word"}


class S7Group(GroupBase):
    """Tags read together at one interval (the poll period, in seconds)."""

    tags: list[S7Tag] = Field(min_length=1)


class S7Profile(ProfileBase):
    type: Literal["s7"]
    groups: list[S7Group] = Field(min_length=1)


class S7DeviceConfig(DeviceBase):
    """One S7 PLC (S7-300/400/1200/1500; LOGO! and S7-200 through their TSAPs)."""

    type: Literal["s7"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=102, ge=1, le=65535)
    rack: int = Field(default=0, ge=0, le=7)
    slot: int = Field(
        default=1, ge=0, le=31, description="1 for S7-1200/1500, 2 for S7-300, 3 for S7-400"
    )
    local_tsap: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="LOGO!/S7-200: e.g. 0x0100 (with remote_tsap)"
    )
    remote_tsap: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="LOGO!/S7-200: e.g. 0x0200 (with local_tsap)"
    )
    pdu_size: int = Field(
        default=480, ge=240, le=960, description="PDU size asked for; the PLC may give less"
    )
    max_gap: int = Field(
        default=32, ge=0, le=960, description="Unused bytes read to join two ranges in one block"
    )
    max_items: int = Field(default=20, ge=1, le=20, description="Variables per multi-item read")
    timeout: float = Field(default=2.0, gt=0, le=60, description="Seconds for one request")
    groups: list[S7Group] | None = None

    @model_validator(mode="after")
    def _tsaps_together(self) -> Self:
        if (self.local_tsap is None) != (self.remote_tsap is None):
            raise ValueError("local_tsap and remote_tsap go together: set both or neither")
        return self

    @property
    def address(self) -> str:
        if self.local_tsap is not None:
            return f"{self.host}:{self.port} · TSAP {self.local_tsap:04X}/{self.remote_tsap:04X}"
        return f"{self.host}:{self.port} · rack {self.rack} slot {self.slot}"
