"""Sparkplug metrics: datatypes of the gateway's values, how each is carried on the wire, and
the metric property ``Quality`` (Sparkplug 3.0: Int32, 0 bad, 192 good, 500 stale)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.reading import Quality, Value
from gateway.sinks.sparkplug import sparkplug_b_pb2 as pb
from gateway.tags import ValueType

__all__ = [
    "QUALITY_CODES",
    "QUALITY_PROPERTIES",
    "MetricDef",
    "datatype_of",
    "metric_def",
    "value_from_wire",
]

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF

_BY_VALUE_TYPE = {
    ValueType.BOOL: pb.Boolean,
    ValueType.INT16: pb.Int16,
    ValueType.UINT16: pb.UInt16,
    ValueType.INT32: pb.Int32,
    ValueType.UINT32: pb.UInt32,
    ValueType.INT64: pb.Int64,
    ValueType.UINT64: pb.UInt64,
    ValueType.FLOAT32: pb.Float,
    ValueType.FLOAT64: pb.Double,
    ValueType.STRING: pb.String,
}

QUALITY_CODES = {Quality.GOOD: 192, Quality.BAD: 0, Quality.UNCERTAIN: 500}
"""The 3.0 spec defines bad, good and stale; an uncertain value is the nearest to stale."""


def _quality_property(code: int) -> pb.Payload.PropertySet:
    value = pb.Payload.PropertyValue(type=pb.Int32, int_value=code)
    return pb.Payload.PropertySet(keys=["Quality"], values=[value])


QUALITY_PROPERTIES = {code: _quality_property(code) for code in QUALITY_CODES.values()}


def _u32(value: Any) -> int:
    return value & _U32  # type: ignore[no-any-return]


def _u64(value: Any) -> int:
    return value & _U64  # type: ignore[no-any-return]


def _int64s(values: Any) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def _doubles(values: Any) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _bools(values: Any) -> bytes:
    """BooleanArray: the count as a little-endian uint32, then the bits, first value in the
    most significant bit."""
    packed = bytearray((len(values) + 7) // 8)
    for index, bit in enumerate(values):
        if bit:
            packed[index >> 3] |= 0x80 >> (index & 7)
    return struct.pack("<I", len(values)) + bytes(packed)


def _strings(values: Any) -> bytes:
    return b"".join(value.encode() + b"\x00" for value in values)


_ToWire = Callable[[Any], object]

# Datatype → (value field, conversion to what that field holds; None: the value as it is).
# Signed integers travel as their two's complement in the unsigned fields. A value of another
# type raises (TypeError, ValueError, struct.error): the caller declares the metric anew.
_WIRE: dict[int, tuple[str, _ToWire | None]] = {
    pb.Int8: ("int_value", _u32),
    pb.Int16: ("int_value", _u32),
    pb.Int32: ("int_value", _u32),
    pb.UInt8: ("int_value", None),
    pb.UInt16: ("int_value", None),
    pb.UInt32: ("int_value", None),
    pb.Int64: ("long_value", _u64),
    pb.UInt64: ("long_value", None),
    pb.DateTime: ("long_value", None),
    pb.Float: ("float_value", None),
    pb.Double: ("double_value", None),
    pb.Boolean: ("boolean_value", None),
    pb.String: ("string_value", None),
    pb.Text: ("string_value", None),
    pb.Int64Array: ("bytes_value", _int64s),
    pb.DoubleArray: ("bytes_value", _doubles),
    pb.BooleanArray: ("bytes_value", _bools),
    pb.StringArray: ("bytes_value", _strings),
}


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric as declared in a birth: DATA messages then carry only its alias."""

    name: str
    alias: int
    datatype: int
    field: str
    """The ``Metric`` value field its values travel in."""
    to_wire: _ToWire | None


def metric_def(name: str, alias: int, datatype: int) -> MetricDef:
    field, to_wire = _WIRE[datatype]
    return MetricDef(name, alias, datatype, field, to_wire)


def datatype_of(value_type: ValueType | None, value: Value) -> int | None:
    """The tag's declared type if it has one, else the type of a value (None: unknown yet)."""
    if value_type is not None:
        return int(_BY_VALUE_TYPE[value_type])
    if isinstance(value, bool):
        return int(pb.Boolean)
    if isinstance(value, int):
        return int(pb.UInt64 if value > 2**63 - 1 else pb.Int64)
    if isinstance(value, float):
        return int(pb.Double)
    if isinstance(value, str):
        return int(pb.String)
    if isinstance(value, list) and value:
        if all(isinstance(item, bool) for item in value):
            return int(pb.BooleanArray)
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return int(pb.Int64Array)
        if all(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            return int(pb.DoubleArray)
        if all(isinstance(item, str) for item in value):
            return int(pb.StringArray)
    return None


_SIGNED = frozenset({pb.Int8, pb.Int16, pb.Int32, pb.Int64})
_INTEGER_WIDTHS = {"int_value": 32, "long_value": 64}
_WRITABLE_FIELDS = frozenset(
    {"int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"}
)


def value_from_wire(metric: pb.Payload.Metric, datatype: int) -> Value:
    """The value a command's metric carries, read as ``datatype`` (the one declared in the
    birth: hosts may leave it out of commands). ValueError if it carries none or an array."""
    field = metric.WhichOneof("value")
    if field is None or metric.is_null:
        raise ValueError("carries no value")
    if field not in _WRITABLE_FIELDS:
        raise ValueError(f"carries {field}, which cannot be written")
    value = getattr(metric, field)
    width = _INTEGER_WIDTHS.get(field)
    if width is None:
        return value  # type: ignore[no-any-return]
    if datatype == pb.Boolean:
        return bool(value)
    if datatype in _SIGNED and value >= 1 << (width - 1):
        value -= 1 << width  # two's complement back to a negative number
    return value  # type: ignore[no-any-return]
