"""OPC UA values → readings: JSON- and Influx-friendly values, quality from the StatusCode.

| OPC UA | value |
| --- | --- |
| Boolean | bool |
| SByte, Byte, Int16, UInt16, Int32, UInt32, Int64, UInt64 (and enumerations) | int |
| Float, Double | float |
| String, XmlElement | str |
| DateTime | ISO 8601 UTC string with milliseconds, ``2026-01-01T00:00:03.000Z``; the OPC UA
  null date (1601-01-01 or earlier) → null |
| ByteString | standard base64 string |
| LocalizedText | its text (the locale is dropped) |
| Guid | canonical string; NodeId, ExpandedNodeId → ``ns=2;s=...``; QualifiedName → ``2:Name`` |
| StatusCode | its name, ``BadSensorFailure`` |
| arrays | lists of the above (matrices: nested lists) |
| ExtensionObject (structures), DataValue, Variant, DiagnosticInfo | bad: unsupported |

Quality follows the severity bits of the StatusCode: Good → good, Uncertain → uncertain (with
the value), Bad → bad (no value); the reason is the code's name.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import code_to_name_doc

from gateway.reading import Quality, Reading, Value

__all__ = [
    "UnsupportedValue",
    "convert_variant",
    "datetime_ns",
    "quality_of",
    "readings_from",
    "status_name",
]

_EPOCH = ua.DateTime(1970, 1, 1, tzinfo=UTC)
_OPC_NULL_DATE = datetime(1601, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_VT = ua.VariantType
_new_tuple = tuple.__new__
_GOOD, _UNCERTAIN, _BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
_names: dict[int, str] = {}


class UnsupportedValue(ValueError):
    """A value of a type the gateway does not map (structures and the like)."""


def status_name(code: int) -> str:
    """``BadNodeIdUnknown`` for 0x80340000 (the low 16 info bits ignored); unknown codes as hex."""
    name = _names.get(code)
    if name is None:
        main = code & 0xFFFF0000
        known = code_to_name_doc.get(main)
        name = known[0] if known else f"0x{main:08X}"
        _names[code] = name
    return name


def quality_of(code: int) -> tuple[Quality, str | None]:
    """Quality and reason of a StatusCode value (its two top bits are the severity)."""
    severity = code >> 30
    if severity == 0:
        return _GOOD, None
    return (_UNCERTAIN if severity == 1 else _BAD), status_name(code)


def datetime_ns(value: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware (UTC) datetime, at microsecond precision."""
    return (value - _EPOCH) // _ONE_US * 1000


def _datetime(value: datetime | None) -> str | None:
    if value is None or value <= _OPC_NULL_DATE:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _bytes(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _text(value: ua.LocalizedText | None) -> str | None:
    return None if value is None else value.Text


def _guid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _node_id(value: ua.NodeId | None) -> str | None:
    return None if value is None else value.to_string()


def _qualified_name(value: ua.QualifiedName | None) -> str | None:
    return None if value is None else value.to_string()


def _status_code(value: ua.StatusCode | None) -> str | None:
    return None if value is None else status_name(value.value)


def _unsupported(variant_type: ua.VariantType) -> Callable[[Any], Value]:
    def fail(_value: Any) -> Value:
        raise UnsupportedValue(f"unsupported data type {variant_type.name}")

    return fail


_CONVERTERS: dict[ua.VariantType, Callable[[Any], Value]] = {
    _VT.DateTime: _datetime,
    _VT.ByteString: _bytes,
    _VT.LocalizedText: _text,
    _VT.Guid: _guid,
    _VT.NodeId: _node_id,
    _VT.ExpandedNodeId: _node_id,
    _VT.QualifiedName: _qualified_name,
    _VT.StatusCode: _status_code,
    _VT.XmlElement: str,
    **{
        vt: _unsupported(vt)
        for vt in (_VT.ExtensionObject, _VT.DataValue, _VT.Variant, _VT.DiagnosticInfo)
    },
}
"""Types whose Python value is not already a JSON value; the others pass through as they are."""


def _convert_array(value: list[Any], convert: Callable[[Any], Value]) -> list[Any]:
    return [
        _convert_array(item, convert) if isinstance(item, list) else convert(item) for item in value
    ]


def convert_variant(variant: ua.Variant) -> Value:
    """The reading value of an OPC UA Variant (see the module's table); UnsupportedValue if none."""
    value = variant.Value
    convert = _CONVERTERS.get(variant.VariantType)
    if convert is None or value is None:
        return value  # type: ignore[no-any-return]
    if isinstance(value, list):
        return _convert_array(value, convert)
    return convert(value)


def readings_from(
    device: str,
    names: Sequence[str],
    values: Sequence[ua.DataValue],
    use_server_timestamp: bool,
    received_ns: int,
) -> tuple[list[Reading], int]:
    """Readings of ``names[i]`` from ``values[i]``, and how many are good: the hot path.

    The reading's time is the value's source timestamp (or its server timestamp, with
    ``use_server_timestamp``), falling back to the other one, then to ``received_ns``.
    """
    readings: list[Reading] = []
    append = readings.append
    good = 0
    converters = _CONVERTERS
    for name, data in zip(names, values, strict=True):
        first, second = (
            (data.ServerTimestamp, data.SourceTimestamp)
            if use_server_timestamp
            else (data.SourceTimestamp, data.ServerTimestamp)
        )
        stamp = first or second
        source_ns = received_ns if stamp is None else (stamp - _EPOCH) // _ONE_US * 1000
        status = data.StatusCode
        code = 0 if status is None else status.value
        if code >> 30:
            quality, reason = quality_of(code)
            if quality is _BAD:
                append(
                    _new_tuple(Reading, (device, name, None, _BAD, source_ns, received_ns, reason))
                )
                continue
        else:
            quality, reason = _GOOD, None
        variant = data.Value
        value = None if variant is None else variant.Value
        if variant is not None and value is not None:
            convert = converters.get(variant.VariantType)
            if convert is not None:
                try:
                    value = (
                        _convert_array(value, convert)
                        if isinstance(value, list)
                        else convert(value)
                    )
                except UnsupportedValue as exc:
                    append(
                        _new_tuple(
                            Reading, (device, name, None, _BAD, source_ns, received_ns, str(exc))
                        )
                    )
                    continue
        append(_new_tuple(Reading, (device, name, value, quality, source_ns, received_ns, reason)))
        if quality is _GOOD:
            good += 1
    return readings, good
