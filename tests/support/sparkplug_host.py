"""A Sparkplug B 3.0 host application for integration tests, written from the specification.

It is written from Eclipse Sparkplug 3.0 (ISO/IEC 20237), not from the gateway's code, so that it
checks the gateway's edge node independently. It has its own protobuf wire codec for the Sparkplug
B ``Payload`` schema (no google.protobuf), records every message under ``spBv1.0/{group}/#``, keeps
each edge node's state as a host does (online, bdSeq, seq, devices, metric definitions, current
values, qualities, history) and records each breach of these rules in ``violations``:

- topic namespace ``spBv1.0/{group}/{type}/{node}[/{device}]``, a device only for D* types;
- QoS 0 and no retain for NBIRTH, NDATA, DBIRTH, DDATA, DDEATH; QoS 1 and no retain for NDEATH;
- a payload timestamp on all but NDEATH; a timestamp on every BIRTH and DATA metric;
- a seq on NBIRTH, NDATA, DBIRTH, DDATA, DDEATH and none on NDEATH, NCMD, DCMD;
- NBIRTH: seq 0, a ``bdSeq`` metric (Int64 or UInt64, 0..255), ``Node Control/Rebirth`` Boolean
  false;
- NDEATH: a ``bdSeq`` metric. A death whose bdSeq is not that of the node's current NBIRTH is
  stale: it goes to ``stale_deaths`` and is ignored, as the spec says (legal, e.g. the will of a
  replaced connection). A matching one takes the node and its devices offline;
- seq of NDATA, DBIRTH, DDATA, DDEATH one more (mod 256) than the node's previous message;
- order: DBIRTH and NDATA only from an online node; DDATA only from a device born after the node's
  latest NBIRTH and not dead since; DDEATH only for such a device;
- BIRTH metrics: a name, a metric datatype, a value (or is_null), names unique within the BIRTH,
  aliases unique across the node's NBIRTH and its DBIRTHs since then;
- DATA metrics: an alias declared in the BIRTH and no name, no datatype other than the declared
  one, the value in the field of the declared datatype (or is_null), a value that fits it;
- a ``Quality`` property is an Int32 of 0 (BAD), 192 (GOOD) or 500 (STALE).
"""

from __future__ import annotations

import copy
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "BDSEQ",
    "MESSAGE_TYPES",
    "QUALITY",
    "QUALITY_BAD",
    "QUALITY_GOOD",
    "QUALITY_STALE",
    "REBIRTH",
    "VALUE_FIELDS",
    "DataType",
    "DeviceView",
    "NodeView",
    "Received",
    "SparkplugDecodeError",
    "SparkplugHost",
    "SpbMetric",
    "SpbPayload",
    "decode_payload",
    "encode_payload",
    "interpret_value",
]

NAMESPACE = "spBv1.0"
BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
QUALITY = "Quality"
QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE = 0, 192, 500
MESSAGE_TYPES = ("NBIRTH", "NDATA", "NDEATH", "NCMD", "DBIRTH", "DDATA", "DDEATH", "DCMD")


class DataType(IntEnum):
    """Sparkplug B datatypes, numbered as in the spec's ``DataType`` enum."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


D = DataType
_KNOWN_TYPES = frozenset(D)
# Metric datatypes: every enum value but Unknown and the two that only properties use.
_METRIC_TYPES = frozenset(d for d in D if d not in (D.Unknown, D.PropertySet, D.PropertySetList))
_SIGNED_WIDTH = {D.Int8: 8, D.Int16: 16, D.Int32: 32, D.Int64: 64}
_UNSIGNED_WIDTH = {D.UInt8: 8, D.UInt16: 16, D.UInt32: 32, D.UInt64: 64}
# struct formats of the fixed-size little-endian array types (3.0, "Array Types").
_ARRAY_FORMATS = {
    D.Int8Array: "b",
    D.Int16Array: "h",
    D.Int32Array: "i",
    D.Int64Array: "q",
    D.UInt8Array: "B",
    D.UInt16Array: "H",
    D.UInt32Array: "I",
    D.UInt64Array: "Q",
    D.FloatArray: "f",
    D.DoubleArray: "d",
    D.DateTimeArray: "Q",
}
_ARRAYS = frozenset((*_ARRAY_FORMATS, D.BooleanArray, D.StringArray))


def _fields_for(*datatypes: DataType, fields: tuple[str, ...]) -> dict[int, frozenset[str]]:
    return {int(d): frozenset(fields) for d in datatypes}


VALUE_FIELDS: dict[int, frozenset[str]] = {
    **_fields_for(D.Int8, D.Int16, D.Int32, D.UInt8, D.UInt16, fields=("int_value",)),
    # The spec maps UInt32 to uint32 (int_value); Tahu's Java library puts it in long_value.
    **_fields_for(D.UInt32, fields=("int_value", "long_value")),
    **_fields_for(D.Int64, D.UInt64, D.DateTime, fields=("long_value",)),
    **_fields_for(D.Float, fields=("float_value",)),
    **_fields_for(D.Double, fields=("double_value",)),
    **_fields_for(D.Boolean, fields=("boolean_value",)),
    **_fields_for(D.String, D.Text, D.UUID, fields=("string_value",)),
    **_fields_for(D.Bytes, D.File, *_ARRAYS, fields=("bytes_value",)),
    **_fields_for(D.DataSet, fields=("dataset_value",)),
    **_fields_for(D.Template, fields=("template_value",)),
    **_fields_for(D.PropertySet, fields=("propertyset_value",)),
    **_fields_for(D.PropertySetList, fields=("propertysets_value",)),
}
"""The ``oneof value`` field(s) that carry each datatype's value."""

# Field numbers of the ``oneof value`` members in Metric and in PropertyValue.
_METRIC_FIELDS = {
    "int_value": 10,
    "long_value": 11,
    "float_value": 12,
    "double_value": 13,
    "boolean_value": 14,
    "string_value": 15,
    "bytes_value": 16,
    "dataset_value": 17,
    "template_value": 18,
    "extension_value": 19,
}
_PROPERTY_FIELDS = {
    "int_value": 3,
    "long_value": 4,
    "float_value": 5,
    "double_value": 6,
    "boolean_value": 7,
    "string_value": 8,
    "propertyset_value": 9,
    "propertysets_value": 10,
    "extension_value": 11,
}
_METRIC_FIELD_NAMES = {number: name for name, number in _METRIC_FIELDS.items()}
_PROPERTY_FIELD_NAMES = {number: name for name, number in _PROPERTY_FIELDS.items()}


class SparkplugDecodeError(ValueError):
    """Bytes that are not a Sparkplug B payload, or a value that does not fit its datatype."""


@dataclass(slots=True)
class SpbMetric:
    """One metric. ``value`` is the Python value (None when null); as decoded with
    ``interpret=False`` it is the wire value of ``value_field`` (e.g. an Int16 -2 as 0xFFFFFFFE)."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    properties: dict[str, object] = field(default_factory=dict)
    """Property values; a PropertySet is a dict, a PropertySetList a list of dicts."""
    property_types: dict[str, int] = field(default_factory=dict)
    value: object = None
    value_field: str | None = None
    """The ``oneof value`` field the value came in (``"int_value"``...); ignored when encoding,
    which picks the field from ``datatype``."""


@dataclass(slots=True)
class SpbPayload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[SpbMetric] = field(default_factory=list)
    uuid: str | None = None
    body: bytes | None = None

    def metric(self, name: str) -> SpbMetric | None:
        """The first metric named ``name`` (BIRTH, NDEATH and commands carry names)."""
        return next((m for m in self.metrics if m.name == name), None)


# --- protobuf wire format -----------------------------------------------------------------------

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_U64 = 1 << 64
_Wire = int | bytes


def _varint(value: int) -> bytes:
    if not 0 <= value < _U64:
        raise ValueError(f"{value} does not fit a uint64 varint")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise SparkplugDecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            # Like protobuf, bits past 64 of a 10-byte varint are dropped.
            return result & (_U64 - 1), pos
        shift += 7
        if shift >= 70:
            raise SparkplugDecodeError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, _Wire]]:
    """(field number, wire type, value): an int for varints, the raw bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise SparkplugDecodeError("field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
            continue
        if wire == _FIXED64:
            size = 8
        elif wire == _FIXED32:
            size = 4
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
        else:
            raise SparkplugDecodeError(f"field {number}: unsupported wire type {wire}")
        if pos + size > len(buf):
            raise SparkplugDecodeError(f"field {number}: truncated")
        yield number, wire, buf[pos : pos + size]
        pos += size


def _uint(wire: int, data: _Wire, what: str) -> int:
    if wire != _VARINT or not isinstance(data, int):
        raise SparkplugDecodeError(f"{what}: wire type {wire}, expected a varint")
    return data


def _chunk(wire: int, data: _Wire, what: str) -> bytes:
    if wire != _LEN or not isinstance(data, bytes):
        raise SparkplugDecodeError(f"{what}: wire type {wire}, expected length-delimited")
    return data


def _text(wire: int, data: _Wire, what: str) -> str:
    try:
        return _chunk(wire, data, what).decode()
    except UnicodeDecodeError as exc:
        raise SparkplugDecodeError(f"{what}: not UTF-8") from exc


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _f_varint(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _varint(value)


def _f_len(number: int, data: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(data)) + data


def _f_str(number: int, text: str) -> bytes:
    return _f_len(number, text.encode())


def _read_value(name: str, wire: int, data: _Wire) -> object:
    """The wire value of a ``oneof value`` member (submessages stay bytes)."""
    if name in ("int_value", "long_value"):
        return _uint(wire, data, name)
    if name == "boolean_value":
        return bool(_uint(wire, data, name))
    if name in ("float_value", "double_value"):
        want = _FIXED32 if name == "float_value" else _FIXED64
        if wire != want or not isinstance(data, bytes):
            raise SparkplugDecodeError(f"{name}: wire type {wire}, expected {want}")
        value: float = struct.unpack("<f" if want == _FIXED32 else "<d", data)[0]
        return value
    if name == "string_value":
        return _text(wire, data, name)
    return _chunk(wire, data, name)


def _write_value(number: int, name: str, wire: object) -> bytes:
    if name == "float_value" and isinstance(wire, float):
        return _key(number, _FIXED32) + struct.pack("<f", wire)
    if name == "double_value" and isinstance(wire, float):
        return _key(number, _FIXED64) + struct.pack("<d", wire)
    if name == "string_value" and isinstance(wire, str):
        return _f_str(number, wire)
    if isinstance(wire, bytes):
        return _f_len(number, wire)
    if isinstance(wire, int):  # int_value, long_value, boolean_value
        return _f_varint(number, int(wire))
    raise TypeError(f"cannot write {wire!r} as {name}")


# --- values by datatype ------------------------------------------------------------------------


def _int(value: object, datatype: DataType) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a {datatype.name} value must be an int, not {value!r}")
    return value


def _signed(raw: int, width: int) -> int:
    """A two's complement value of ``width`` bits, carried in ``width`` bits or sign-extended to
    32 or 64 (an Int8 -1 in int_value may be 0xFF or 0xFFFFFFFF, depending on the encoder)."""
    for carrier in (width, 32, 64):
        if carrier >= width and raw < 1 << carrier:
            value = raw - (1 << carrier) if raw >> (carrier - 1) else raw
            if -(1 << (width - 1)) <= value < 1 << (width - 1):
                return value
    raise SparkplugDecodeError(f"{raw:#x} is not a signed {width}-bit value")


def _pack_array(datatype: DataType, values: object) -> bytes:
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise TypeError(f"a {datatype.name} value must be a sequence, not {values!r}")
    if datatype == D.BooleanArray:
        # A little-endian uint32 count, then the bits, the first in the top bit of the first byte.
        bits = bytearray((len(values) + 7) // 8)
        for i, bit in enumerate(values):
            if bit:
                bits[i // 8] |= 0x80 >> (i % 8)
        return struct.pack("<I", len(values)) + bytes(bits)
    if datatype == D.StringArray:
        return b"".join(str(text).encode() + b"\0" for text in values)
    return struct.pack(f"<{len(values)}{_ARRAY_FORMATS[datatype]}", *values)


def _unpack_array(datatype: DataType, data: bytes) -> list[Any]:
    if datatype == D.BooleanArray:
        if len(data) < 4:
            raise SparkplugDecodeError("BooleanArray shorter than its 4-byte count")
        (count,) = struct.unpack_from("<I", data)
        if len(data) != 4 + (count + 7) // 8:
            raise SparkplugDecodeError(f"BooleanArray of {count} in {len(data) - 4} bytes")
        return [bool(data[4 + i // 8] & 0x80 >> (i % 8)) for i in range(count)]
    if datatype == D.StringArray:
        if not data:
            return []
        if not data.endswith(b"\0"):
            raise SparkplugDecodeError("StringArray not null-terminated")
        try:
            return [part.decode() for part in data[:-1].split(b"\0")]
        except UnicodeDecodeError as exc:
            raise SparkplugDecodeError("StringArray: not UTF-8") from exc
    fmt = _ARRAY_FORMATS[datatype]
    size = struct.calcsize(fmt)
    if len(data) % size:
        raise SparkplugDecodeError(f"{datatype.name} of {len(data)} bytes")
    return list(struct.unpack(f"<{len(data) // size}{fmt}", data))


def _to_wire(datatype: int, value: object) -> tuple[str, object]:
    """The ``oneof value`` field and wire value for a Python value of ``datatype``."""
    dt = DataType(datatype)
    if dt in _SIGNED_WIDTH:
        width, number = _SIGNED_WIDTH[dt], _int(value, dt)
        if not -(1 << (width - 1)) <= number < 1 << (width - 1):
            raise ValueError(f"{number} does not fit {dt.name}")
        # Two's complement in the carrier: uint32 int_value, or uint64 long_value for Int64.
        return ("long_value", number % _U64) if dt == D.Int64 else ("int_value", number % (1 << 32))
    if dt in _UNSIGNED_WIDTH:
        number = _int(value, dt)
        if not 0 <= number < 1 << _UNSIGNED_WIDTH[dt]:
            raise ValueError(f"{number} does not fit {dt.name}")
        return ("long_value" if dt == D.UInt64 else "int_value"), number
    if dt == D.DateTime:
        return "long_value", _int(value, dt)
    if dt in (D.Float, D.Double) and isinstance(value, int | float) and not isinstance(value, bool):
        return ("float_value" if dt == D.Float else "double_value"), float(value)
    if dt == D.Boolean and isinstance(value, bool):
        return "boolean_value", value
    if dt in (D.String, D.Text, D.UUID) and isinstance(value, str):
        return "string_value", value
    if dt in _ARRAYS:
        return "bytes_value", _pack_array(dt, value)
    if dt in (D.Bytes, D.File, D.DataSet, D.Template) and isinstance(value, bytes):
        # A DataSet or Template is given as its encoded submessage.
        (name,) = VALUE_FIELDS[dt]
        return name, value
    raise TypeError(f"cannot encode {value!r} as {dt.name}")


def interpret_value(datatype: int, value_field: str | None, raw: object) -> object:
    """The Python value of wire value ``raw`` of ``datatype``: signed integers sign-converted,
    arrays unpacked. A value in another field than the datatype's is returned as it is."""
    if value_field is None or value_field not in VALUE_FIELDS.get(datatype, frozenset()):
        return raw
    dt = DataType(datatype)
    if dt in _SIGNED_WIDTH and isinstance(raw, int):
        return _signed(raw, _SIGNED_WIDTH[dt])
    if dt in _UNSIGNED_WIDTH and isinstance(raw, int) and raw >> _UNSIGNED_WIDTH[dt]:
        raise SparkplugDecodeError(f"{raw} does not fit {dt.name}")
    if dt in _ARRAYS and isinstance(raw, bytes):
        return _unpack_array(dt, raw)
    return raw


# --- messages ----------------------------------------------------------------------------------


def _infer_type(value: object) -> int:
    """The datatype of a nested property value, which carries no declared type here."""
    if isinstance(value, bool):
        return D.Boolean
    if isinstance(value, int):
        return D.Int64
    if isinstance(value, float):
        return D.Double
    if isinstance(value, str):
        return D.String
    if isinstance(value, Mapping):
        return D.PropertySet
    if isinstance(value, list):
        return D.PropertySetList
    raise TypeError(f"no property datatype for {value!r}")


def _encode_property_set(values: Mapping[str, object], types: Mapping[str, int]) -> bytes:
    out = bytearray()
    for key in values:
        out += _f_str(1, key)
    for key, value in values.items():
        ptype = types[key] if key in types else _infer_type(value)
        out += _f_len(2, _encode_property_value(ptype, value))
    return bytes(out)


def _encode_property_value(ptype: int, value: object) -> bytes:
    out = _f_varint(1, ptype)
    if value is None:
        return out + _f_varint(2, 1)
    if ptype == D.PropertySet and isinstance(value, Mapping):
        return out + _f_len(9, _encode_property_set(value, {}))
    if ptype == D.PropertySetList and isinstance(value, list):
        sets = b"".join(_f_len(1, _encode_property_set(s, {})) for s in value)
        return out + _f_len(10, sets)
    name, wire = _to_wire(ptype, value)
    return out + _write_value(_PROPERTY_FIELDS[name], name, wire)


def _decode_property_set(buf: bytes) -> tuple[dict[str, object], dict[str, int]]:
    keys: list[str] = []
    values: list[tuple[int, object]] = []
    for number, wire, data in _fields(buf):
        if number == 1:
            keys.append(_text(wire, data, "PropertySet.keys"))
        elif number == 2:
            values.append(_decode_property_value(_chunk(wire, data, "PropertySet.values")))
    if len(keys) != len(values):
        raise SparkplugDecodeError(f"PropertySet of {len(keys)} keys and {len(values)} values")
    pairs = list(zip(keys, values, strict=True))
    return {k: v for k, (_, v) in pairs}, {k: t for k, (t, _) in pairs}


def _decode_property_value(buf: bytes) -> tuple[int, object]:
    ptype, is_null = int(D.Unknown), False
    value_field: str | None = None
    raw: object = None
    for number, wire, data in _fields(buf):
        name = _PROPERTY_FIELD_NAMES.get(number)
        if number == 1:
            ptype = _uint(wire, data, "PropertyValue.type")
        elif number == 2:
            is_null = bool(_uint(wire, data, "PropertyValue.is_null"))
        elif name == "propertyset_value":
            value_field, raw = name, _decode_property_set(_chunk(wire, data, name))[0]
        elif name == "propertysets_value":
            value_field, raw = name, _decode_property_set_list(_chunk(wire, data, name))
        elif name is not None:
            value_field, raw = name, _read_value(name, wire, data)
    if is_null:
        return ptype, None
    return ptype, interpret_value(ptype, value_field, raw)


def _decode_property_set_list(buf: bytes) -> list[dict[str, object]]:
    return [
        _decode_property_set(_chunk(wire, data, "PropertySetList"))[0]
        for number, wire, data in _fields(buf)
        if number == 1
    ]


def _encode_metric(metric: SpbMetric, with_datatype: bool) -> bytes:
    out = bytearray()
    if metric.name is not None:
        out += _f_str(1, metric.name)
    if metric.alias is not None:
        out += _f_varint(2, metric.alias)
    if metric.timestamp is not None:
        out += _f_varint(3, metric.timestamp)
    if metric.datatype is not None and with_datatype:
        out += _f_varint(4, metric.datatype)
    if metric.is_historical:
        out += _f_varint(5, 1)
    if metric.is_transient:
        out += _f_varint(6, 1)
    if metric.is_null:
        out += _f_varint(7, 1)
    if metric.properties:
        out += _f_len(9, _encode_property_set(metric.properties, metric.property_types))
    if not metric.is_null and metric.value is not None:
        if metric.datatype is None:
            raise ValueError(f"metric {metric.name or metric.alias}: a value needs a datatype")
        name, wire = _to_wire(metric.datatype, metric.value)
        out += _write_value(_METRIC_FIELDS[name], name, wire)
    return bytes(out)


def encode_payload(payload: SpbPayload, *, datatypes: bool = True) -> bytes:
    """The protobuf bytes of ``payload``. Each value goes in the field of its metric's datatype;
    ``datatypes=False`` leaves the datatypes off the wire, as DATA messages should."""
    out = bytearray()
    if payload.timestamp is not None:
        out += _f_varint(1, payload.timestamp)
    for metric in payload.metrics:
        out += _f_len(2, _encode_metric(metric, datatypes))
    if payload.seq is not None:
        out += _f_varint(3, payload.seq)
    if payload.uuid is not None:
        out += _f_str(4, payload.uuid)
    if payload.body is not None:
        out += _f_len(5, payload.body)
    return bytes(out)


def _decode_metric(buf: bytes, interpret: bool) -> SpbMetric:
    metric = SpbMetric()
    for number, wire, data in _fields(buf):
        value_name = _METRIC_FIELD_NAMES.get(number)
        if number == 1:
            metric.name = _text(wire, data, "Metric.name")
        elif number == 2:
            metric.alias = _uint(wire, data, "Metric.alias")
        elif number == 3:
            metric.timestamp = _uint(wire, data, "Metric.timestamp")
        elif number == 4:
            metric.datatype = _uint(wire, data, "Metric.datatype")
        elif number == 5:
            metric.is_historical = bool(_uint(wire, data, "Metric.is_historical"))
        elif number == 6:
            metric.is_transient = bool(_uint(wire, data, "Metric.is_transient"))
        elif number == 7:
            metric.is_null = bool(_uint(wire, data, "Metric.is_null"))
        elif number == 9:
            props, types = _decode_property_set(_chunk(wire, data, "Metric.properties"))
            metric.properties, metric.property_types = props, types
        elif value_name is not None:
            metric.value_field, metric.value = value_name, _read_value(value_name, wire, data)
        # 8 (MetaData) and unknown fields are skipped, as protobuf does.
    if metric.is_null:
        metric.value = None
    elif interpret and metric.datatype is not None:
        metric.value = interpret_value(metric.datatype, metric.value_field, metric.value)
    return metric


def decode_payload(data: bytes, *, interpret: bool = True) -> SpbPayload:
    """Decode a Sparkplug B payload. With ``interpret`` each value of a metric that carries its
    datatype is converted by it; without, values stay as on the wire (see ``interpret_value``)."""
    payload = SpbPayload()
    for number, wire, value in _fields(data):
        if number == 1:
            payload.timestamp = _uint(wire, value, "Payload.timestamp")
        elif number == 2:
            payload.metrics.append(
                _decode_metric(_chunk(wire, value, "Payload.metrics"), interpret)
            )
        elif number == 3:
            payload.seq = _uint(wire, value, "Payload.seq")
        elif number == 4:
            payload.uuid = _text(wire, value, "Payload.uuid")
        elif number == 5:
            payload.body = _chunk(wire, value, "Payload.body")
    return payload


# --- host --------------------------------------------------------------------------------------

_DEVICE_TYPES = frozenset(("DBIRTH", "DDATA", "DDEATH", "DCMD"))
# Edge node messages that carry the node's seq; NDEATH and commands must not.
_SEQUENCED = frozenset(("NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH"))
_QOS = {"NDEATH": 1}  # the others: 0


@dataclass(frozen=True, slots=True)
class Received:
    """One delivered message."""

    topic: str
    kind: str
    """The message type (``"NBIRTH"``...); for a topic outside the namespace, its third level."""
    group: str
    node: str
    device: str | None
    qos: int
    retain: bool
    payload: SpbPayload | None
    """None when the bytes are no Sparkplug B payload. DATA values are interpreted by the
    datatypes of the BIRTH, the others by the datatype each metric carries."""
    received_at: float
    """``time.monotonic()`` on arrival."""


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A snapshot of a device's (or, as ``NodeView``, a node's) metrics as the host sees them."""

    online: bool
    metrics: dict[str, tuple[int | None, int]]
    """name -> (alias, datatype), as declared in the latest BIRTH."""
    values: dict[str, object]
    """Current values by name (historical DATA excluded)."""
    qualities: dict[str, int]
    """By name: the ``Quality`` property of the latest value (GOOD when absent, as the spec
    implies), STALE once the device or node died."""
    history: dict[str, list[tuple[int | None, object]]]
    """By name: (metric timestamp, value) of each ``is_historical`` metric received, across
    births."""


@dataclass(frozen=True, slots=True)
class NodeView(DeviceView):
    bdseq: int | None
    """The bdSeq of the node's current NBIRTH."""
    seq: int | None
    """The seq of the node's latest message (None while offline)."""
    devices: dict[str, DeviceView]


@dataclass(slots=True)
class _Metrics:
    defs: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    by_alias: dict[int, str] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)
    qualities: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[tuple[int | None, object]]] = field(default_factory=dict)

    def stale(self) -> None:
        self.qualities = dict.fromkeys(self.qualities, QUALITY_STALE)


@dataclass(slots=True)
class _Device:
    metrics: _Metrics = field(default_factory=_Metrics)
    online: bool = False
    epoch: int = 0
    """The node's NBIRTH count at this device's latest DBIRTH: DBIRTHs before the node's latest
    NBIRTH no longer count."""


@dataclass(slots=True)
class _Node:
    metrics: _Metrics = field(default_factory=_Metrics)
    online: bool = False
    bdseq: int | None = None
    seq: int | None = None
    epoch: int = 0
    devices: dict[str, _Device] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dt_name(datatype: int | None) -> str:
    return D(datatype).name if datatype in _KNOWN_TYPES else str(datatype)


def _parse_topic(topic: str) -> tuple[str, str, str, str | None, str | None]:
    """(group, type, node, device, what is wrong or None)."""
    parts = topic.split("/")
    group, kind, node = [*parts[1:4], "", "", ""][:3]
    device = parts[4] if len(parts) == 5 else None
    if parts[0] != NAMESPACE or not 4 <= len(parts) <= 5 or not all(parts):
        return group, kind, node, device, "not spBv1.0/{group}/{type}/{node}[/{device}]"
    if kind not in MESSAGE_TYPES:
        return group, kind, node, device, f"unknown message type {kind!r}"
    if (kind in _DEVICE_TYPES) != (device is not None):
        needs = "needs a device id" if kind in _DEVICE_TYPES else "takes no device id"
        return group, kind, node, device, f"{kind} {needs}"
    return group, kind, node, device, None


class SparkplugHost:
    """A Sparkplug B 3.0 host application over one MQTT 3.1.1 connection (see the module doc).

    ``received``, ``violations`` and ``stale_deaths`` only grow, appended by paho's network thread
    under the host's lock: a test reads them after a ``wait_*``, or in a ``wait_for`` predicate.
    """

    def __init__(
        self,
        host: str,
        port: int,
        group_id: str,
        host_id: str | None = None,
        *,
        persistent: bool = False,
    ) -> None:
        """``persistent``: a session the broker keeps while the host is away (with a broker
        that queues QoS 0 messages too, the host then misses nothing across a broker restart);
        the host reconnects within a second of the broker coming back."""
        self.group_id = group_id
        self.host_id = host_id
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.stale_deaths: list[Received] = []
        """NDEATHs ignored because their bdSeq is not that of the node's current NBIRTH."""
        self._address = (host, port)
        # Re-entrant: wait_for's predicates call node_state() under the condition's lock.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._nodes: dict[str, _Node] = {}
        self._subscribed = threading.Event()
        self._will_ts = 0
        self._state_ts: int | None = None
        self._state_online = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"spb-host-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- connection

    @property
    def _state_topic(self) -> str:
        return f"{NAMESPACE}/STATE/{self.host_id}"

    def start(self, timeout: float = 10.0) -> SparkplugHost:
        """Connect, subscribe to ``spBv1.0/{group}/#`` at QoS 1 and return once acknowledged."""
        if self.host_id is not None:
            # The will is the offline STATE; the online one must carry the same timestamp.
            self._will_ts, self._state_ts = _now_ms(), None
            will = json.dumps({"online": False, "timestamp": self._will_ts})
            self._client.will_set(self._state_topic, will, qos=1, retain=True)
        self._subscribed.clear()
        self._client.connect(*self._address, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            host, port = self._address
            raise AssertionError(f"no SUBACK from {host}:{port} within {timeout} s")
        return self

    def stop(self) -> None:
        """Publish the offline STATE if online (a host's clean disconnect), then disconnect."""
        if self._state_online and self._client.is_connected():
            self.publish_state(False)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> SparkplugHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        # Here, not in start(): paho's reconnects need the subscription (and STATE) again.
        client.subscribe(f"{NAMESPACE}/{self.group_id}/#", qos=1)
        with self._lock:
            online, ts = self._state_online, self._state_ts
        if online and ts is not None:
            client.publish(self._state_topic, self._state_json(True, ts), qos=1, retain=True)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if not any(code.is_failure for code in reason_codes):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._handle(message.topic, bytes(message.payload), message.qos, bool(message.retain))

    # -- publishing

    @staticmethod
    def _state_json(online: bool, timestamp: int) -> str:
        return json.dumps({"online": online, "timestamp": timestamp})

    def publish_state(self, online: bool, timeout: float = 10.0) -> None:
        """Publish the 3.0 STATE message (retained, QoS 1) and wait until it is acknowledged.

        The first online STATE of a connection carries its will's timestamp, as the spec requires;
        every later one is newer than the one before, so edge nodes that ignore older STATE
        messages take it.
        """
        if self.host_id is None:
            raise ValueError("publish_state needs a host_id")
        with self._lock:
            last = self._state_ts
        ts = self._will_ts if online and last is None else max(_now_ms(), (last or 0) + 1)
        self._publish(self._state_topic, self._state_json(online, ts).encode(), 1, True, timeout)
        with self._lock:
            self._state_online, self._state_ts = online, ts

    def send_rebirth(self, node: str, timeout: float = 10.0) -> None:
        """NCMD ``Node Control/Rebirth`` = true."""
        metric = SpbMetric(name=REBIRTH, datatype=D.Boolean, value=True)
        payload = SpbPayload(timestamp=_now_ms(), metrics=[metric])
        self._publish(f"{NAMESPACE}/{self.group_id}/NCMD/{node}", payload, 0, False, timeout)

    def send_dcmd(
        self,
        node: str,
        device: str,
        values: Mapping[str, object],
        by_alias: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """DCMD writing ``values`` (by metric name; None writes a null), each with the datatype of
        the device's DBIRTH; ``by_alias`` sends the DBIRTH's aliases instead of the names."""
        with self._lock:
            state = self._nodes.get(node)
            dev = state.devices.get(device) if state is not None else None
            if dev is None:
                raise KeyError(f"no DBIRTH seen from {node}/{device}")
            defs = dict(dev.metrics.defs)
        metrics = []
        for name, value in values.items():
            if name not in defs:
                raise KeyError(f"{node}/{device} declared no metric {name!r}")
            alias, datatype = defs[name]
            if by_alias and alias is None:
                raise ValueError(f"{node}/{device} declared {name!r} without an alias")
            metrics.append(
                SpbMetric(
                    name=None if by_alias else name,
                    alias=alias if by_alias else None,
                    datatype=datatype,
                    value=value,
                    is_null=value is None,
                )
            )
        payload = SpbPayload(timestamp=_now_ms(), metrics=metrics)
        self._publish(
            f"{NAMESPACE}/{self.group_id}/DCMD/{node}/{device}", payload, 0, False, timeout
        )

    def _publish(
        self, topic: str, payload: SpbPayload | bytes, qos: int, retain: bool, timeout: float
    ) -> None:
        data = payload if isinstance(payload, bytes) else encode_payload(payload)
        # Not under the lock: paho's thread needs it to deliver messages before our PUBACK.
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"{topic} not published within {timeout} s")

    # -- waiting and views

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str | None = None
    ) -> None:
        """Return once ``predicate()`` is true (evaluated on each message), else AssertionError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_report(what or "the condition", timeout))
                # Messages notify; the short cap also catches predicates on other state.
                self._changed.wait(min(remaining, 0.25))

    def _timeout_report(self, what: str, timeout: float) -> str:
        last = [
            f"{r.kind} {r.topic}" + (f" seq={r.payload.seq}" if r.payload is not None else "")
            for r in self.received[-8:]
        ]
        report = f"timed out after {timeout} s waiting for {what}; {len(self.received)} received"
        if last:
            report += ", the last: " + "; ".join(last)
        if self.violations:
            report += "; violations: " + "; ".join(self.violations)
        return report

    def wait_message(
        self,
        kind: str,
        node: str,
        device: str | None = None,
        after: int = 0,
        timeout: float = 10.0,
    ) -> Received:
        """The first ``kind`` message from ``node`` (and ``device``) at index >= ``after`` of
        ``received`` (e.g. ``len(host.received)`` taken before acting)."""
        found: list[Received] = []

        def arrived() -> bool:
            for r in itertools.islice(self.received, after, None):
                if r.kind == kind and r.node == node and (device is None or r.device == device):
                    found.append(r)
                    return True
            return False

        where = node if device is None else f"{node}/{device}"
        self.wait_for(arrived, timeout, f"{kind} from {where} at index >= {after}")
        return found[0]

    def node_state(self, node: str) -> NodeView:
        """A snapshot of ``node`` (offline and empty if never seen)."""
        with self._lock:
            state = self._nodes.get(node) or _Node()
            devices = {
                name: DeviceView(dev.online, **self._metrics_view(dev.metrics))
                for name, dev in state.devices.items()
            }
            return NodeView(
                state.online,
                **self._metrics_view(state.metrics),
                bdseq=state.bdseq,
                seq=state.seq,
                devices=devices,
            )

    @staticmethod
    def _metrics_view(metrics: _Metrics) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "metrics": metrics.defs,
                "values": metrics.values,
                "qualities": metrics.qualities,
                "history": metrics.history,
            }
        )

    # -- the host's rules

    def _handle(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        """Record and check one delivered message (paho's callback; tests call it directly)."""
        arrived = time.monotonic()
        group, kind, node, device, wrong = _parse_topic(topic)
        payload: SpbPayload | None = None
        try:
            payload = decode_payload(data, interpret=False)
        except SparkplugDecodeError as exc:
            decode_error = str(exc)
        received = Received(topic, kind, group, node, device, qos, retain, payload, arrived)
        with self._changed:
            if wrong is not None:
                self._violation("namespace", received, wrong)
            elif payload is None:
                self._violation("payload", received, f"not a Sparkplug B payload: {decode_error}")
            else:
                self._check(received, payload)
            self.received.append(received)
            self._changed.notify_all()

    def _violation(self, rule: str, received: Received, detail: str) -> None:
        self.violations.append(f"{rule}: {received.topic}: {detail}")

    def _check(self, r: Received, p: SpbPayload) -> None:
        if r.qos != _QOS.get(r.kind, 0):
            self._violation("qos", r, f"{r.kind} with QoS {r.qos}, expected {_QOS.get(r.kind, 0)}")
        if r.retain:
            self._violation("retain", r, f"{r.kind} with the retain flag")
        if p.timestamp is None and r.kind != "NDEATH":
            self._violation("timestamp", r, f"{r.kind} without a payload timestamp")
        if r.kind in _SEQUENCED and p.seq is None:
            self._violation("seq", r, f"{r.kind} without a seq")
        elif r.kind not in _SEQUENCED and p.seq is not None:
            self._violation("seq", r, f"{r.kind} carries seq {p.seq}")
        if r.kind in ("NDEATH", "NCMD", "DCMD"):
            self._interpret_as_sent(r, p)
        if r.kind == "NBIRTH":
            self._nbirth(r, p)
            return
        if r.kind == "NDEATH":
            self._ndeath(r, p)
            return
        node = self._nodes.get(r.node)
        if r.kind in _SEQUENCED and node is not None:
            self._next_seq(r, p, node)
        if r.kind == "DBIRTH":
            self._dbirth(r, p, node)
        elif r.kind in ("NDATA", "DDATA"):
            self._data(r, p, node)
        elif r.kind == "DDEATH":
            self._ddeath(r, node)

    def _interpret_as_sent(self, r: Received, p: SpbPayload) -> None:
        """Values of messages without a BIRTH to refer to, by the datatype each metric carries."""
        for m in p.metrics:
            if m.datatype is not None and not m.is_null:
                try:
                    m.value = interpret_value(m.datatype, m.value_field, m.value)
                except SparkplugDecodeError as exc:
                    self._violation("value", r, f"{m.name or m.alias}: {exc}")

    def _next_seq(self, r: Received, p: SpbPayload, node: _Node) -> None:
        if node.seq is None or p.seq is None:
            return  # an offline node: the order check reports it
        expected = (node.seq + 1) % 256
        if p.seq != expected:
            self._violation("seq", r, f"seq {p.seq} after {node.seq}, expected {expected}")
        node.seq = p.seq

    def _bdseq(self, r: Received, p: SpbPayload) -> int | None:
        metric = p.metric(BDSEQ)
        if metric is None:
            self._violation("bdseq", r, f"{r.kind} without a bdSeq metric")
            return None
        if metric.datatype not in (D.Int64, D.UInt64):
            self._violation("bdseq", r, f"bdSeq is {_dt_name(metric.datatype)}, not Int64/UInt64")
        value = metric.value
        if isinstance(value, bool) or not isinstance(value, int):
            self._violation("bdseq", r, f"bdSeq value {value!r} is no integer")
            return None
        if not 0 <= value <= 255:
            self._violation("bdseq", r, f"bdSeq {value} outside 0..255")
        return value

    def _nbirth(self, r: Received, p: SpbPayload) -> None:
        if p.seq is not None and p.seq != 0:
            self._violation("nbirth-seq", r, f"NBIRTH with seq {p.seq}, expected 0")
        metrics = self._birth_metrics(r, p, {})
        bdseq = self._bdseq(r, p)
        rebirth = p.metric(REBIRTH)
        if rebirth is None:
            self._violation("rebirth-metric", r, f"NBIRTH without {REBIRTH!r}")
        elif rebirth.datatype != D.Boolean or rebirth.value is not False:
            found = f"{_dt_name(rebirth.datatype)} {rebirth.value!r}"
            self._violation("rebirth-metric", r, f"{REBIRTH!r} is {found}, expected Boolean False")
        node = self._nodes.setdefault(r.node, _Node())
        metrics.history = node.metrics.history
        node.metrics, node.online, node.bdseq, node.seq = metrics, True, bdseq, p.seq
        node.epoch += 1
        # Devices come back with their DBIRTHs, which follow a (re)birth.
        for device in node.devices.values():
            device.online = False

    def _ndeath(self, r: Received, p: SpbPayload) -> None:
        bdseq = self._bdseq(r, p)
        node = self._nodes.get(r.node)
        if bdseq is None:
            return
        if node is None or not node.online or node.bdseq != bdseq:
            self.stale_deaths.append(r)
            return
        node.online, node.seq = False, None
        node.metrics.stale()
        for device in node.devices.values():
            device.online = False
            device.metrics.stale()

    def _dbirth(self, r: Received, p: SpbPayload, node: _Node | None) -> None:
        assert r.device is not None  # a D* topic, checked by _parse_topic
        if node is None or not node.online:
            self._violation("order", r, "DBIRTH from a node that is not online (no NBIRTH)")
            node = self._nodes.setdefault(r.node, _Node())
        # Aliases taken by the node and by the other devices born since its NBIRTH; this
        # device's own may be reused by its re-birth.
        taken = {alias: f"node metric {name!r}" for alias, name in node.metrics.by_alias.items()}
        for name, other in node.devices.items():
            if name != r.device and other.epoch == node.epoch:
                for alias, metric in other.metrics.by_alias.items():
                    taken[alias] = f"metric {metric!r} of device {name!r}"
        device = node.devices.setdefault(r.device, _Device())
        history = device.metrics.history
        device.metrics = self._birth_metrics(r, p, taken)
        device.metrics.history = history
        device.online, device.epoch = True, node.epoch

    def _ddeath(self, r: Received, node: _Node | None) -> None:
        device = node.devices.get(r.device or "") if node is not None else None
        if node is None or not node.online or device is None or device.epoch != node.epoch:
            self._violation("ddeath-unknown", r, "DDEATH of a device without a DBIRTH since NBIRTH")
            return
        device.online = False
        device.metrics.stale()

    def _birth_metrics(self, r: Received, p: SpbPayload, taken: Mapping[int, str]) -> _Metrics:
        table = _Metrics()
        for m in p.metrics:
            if m.name is None:
                self._violation("birth-metric", r, f"metric (alias {m.alias}) without a name")
                continue
            if m.datatype is None or m.datatype not in _METRIC_TYPES:
                self._violation("birth-metric", r, f"{m.name!r} datatype {m.datatype}")
                continue
            if m.name in table.defs:
                self._violation("birth-metric", r, f"{m.name!r} declared twice")
            if m.alias is not None:
                owner = taken.get(m.alias) or (
                    f"{table.by_alias[m.alias]!r}" if m.alias in table.by_alias else None
                )
                if owner is not None:
                    self._violation("alias-unique", r, f"alias {m.alias} of {m.name!r}: {owner}")
                else:
                    table.by_alias[m.alias] = m.name
            table.defs[m.name] = (m.alias, m.datatype)
            self._apply(r, table, m.name, m.datatype, m)
        return table

    def _data(self, r: Received, p: SpbPayload, node: _Node | None) -> None:
        if node is None or not node.online:
            self._violation("order", r, f"{r.kind} from a node that is not online (no NBIRTH)")
            return
        if r.kind == "NDATA":
            table = node.metrics
        else:
            device = node.devices.get(r.device or "")
            if device is None or not device.online or device.epoch != node.epoch:
                detail = "DDATA from a device without a DBIRTH since NBIRTH and DDEATH"
                self._violation("order", r, detail)
                return
            table = device.metrics
        for m in p.metrics:
            name: str | None
            if m.alias is None:
                self._violation("alias", r, f"metric {m.name!r} without an alias")
                name = m.name if m.name in table.defs else None
            else:
                if m.name is not None:
                    self._violation("data-name", r, f"alias {m.alias} also carries {m.name!r}")
                name = table.by_alias.get(m.alias)
                if name is None:
                    self._violation("alias-undeclared", r, f"alias {m.alias} not in the BIRTH")
            if name is None:
                continue
            datatype = table.defs[name][1]
            if m.datatype is not None and m.datatype != datatype:
                declared, sent = _dt_name(datatype), _dt_name(m.datatype)
                self._violation("datatype", r, f"{name!r} sent as {sent}, born {declared}")
            self._apply(r, table, name, datatype, m)

    def _apply(self, r: Received, table: _Metrics, name: str, datatype: int, m: SpbMetric) -> None:
        """Check a BIRTH or DATA metric's value, timestamp and quality, and record it."""
        if m.timestamp is None:
            self._violation("metric-timestamp", r, f"{name!r} without a timestamp")
        if not m.is_null:
            fields = VALUE_FIELDS[datatype]
            if m.value_field is None:
                self._violation("value-field", r, f"{name!r} without a value, is_null not set")
            elif m.value_field not in fields:
                expected = " or ".join(sorted(fields))
                detail = f"{name!r} ({_dt_name(datatype)}) in {m.value_field}, expected {expected}"
                self._violation("value-field", r, detail)
            else:
                try:
                    m.value = interpret_value(datatype, m.value_field, m.value)
                except SparkplugDecodeError as exc:
                    self._violation("value", r, f"{name!r}: {exc}")
        quality = self._quality(r, name, m)
        if m.is_historical:
            table.history.setdefault(name, []).append((m.timestamp, m.value))
        else:
            table.values[name] = m.value
            table.qualities[name] = quality

    def _quality(self, r: Received, name: str, m: SpbMetric) -> int:
        if QUALITY not in m.properties:
            return QUALITY_GOOD  # the property "is only required if the quality is not GOOD"
        ptype, value = m.property_types.get(QUALITY), m.properties[QUALITY]
        valid = (QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE)
        if ptype != D.Int32 or value not in valid:
            found = f"{_dt_name(ptype)} {value!r}"
            self._violation("quality", r, f"{name!r} Quality is {found}, expected Int32 0/192/500")
        return value if isinstance(value, int) and not isinstance(value, bool) else QUALITY_BAD
