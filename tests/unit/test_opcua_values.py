"""OPC UA values → readings: every built-in type, arrays, status codes, timestamps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from connectors.opcua.values import (
    UnsupportedValue,
    convert_variant,
    datetime_ns,
    quality_of,
    readings_from,
    status_name,
)
from gateway.reading import Quality

VT = ua.VariantType
WHEN = ua.DateTime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

# (variant type, value as asyncua decodes it, reading value)
VALUES: list[tuple[ua.VariantType, Any, Any]] = [
    (VT.Boolean, True, True),
    (VT.SByte, -128, -128),
    (VT.Byte, 255, 255),
    (VT.Int16, -32768, -32768),
    (VT.UInt16, 65535, 65535),
    (VT.Int32, -(2**31), -(2**31)),
    (VT.UInt32, 2**32 - 1, 2**32 - 1),
    (VT.Int64, -(2**63), -(2**63)),
    (VT.UInt64, 2**64 - 1, 2**64 - 1),
    (VT.Float, 1.5, 1.5),
    (VT.Double, -2.25e300, -2.25e300),
    (VT.String, "Ünïcode ✓", "Ünïcode ✓"),
    (VT.String, None, None),
    (VT.DateTime, WHEN, "2026-01-02T03:04:05.678Z"),
    (VT.DateTime, datetime(1601, 1, 1, tzinfo=UTC), None),
    (VT.ByteString, b"\x00\xca\xfe", "AMr+"),
    (VT.ByteString, b"", ""),
    (VT.LocalizedText, ua.LocalizedText("running", "en"), "running"),
    (VT.Guid, uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (VT.XmlElement, "<a/>", "<a/>"),
    (VT.NodeId, ua.NodeId(ua.String("Line1.Speed"), ua.Int16(2)), "ns=2;s=Line1.Speed"),
    (VT.QualifiedName, ua.QualifiedName("Speed", 2), "2:Speed"),
    (VT.StatusCode, ua.StatusCode(ua.UInt32(StatusCodes.BadSensorFailure)), "BadSensorFailure"),
    (VT.Null, None, None),
    # arrays are lists of mapped elements; matrices nested lists
    (VT.Double, [1.0, 2.5], [1.0, 2.5]),
    (VT.Boolean, [True, False], [True, False]),
    (VT.Int32, [[1, 2], [3, 4]], [[1, 2], [3, 4]]),
    (VT.DateTime, [WHEN], ["2026-01-02T03:04:05.678Z"]),
    (VT.ByteString, [b"\x01", b"\x02"], ["AQ==", "Ag=="]),
    (VT.LocalizedText, [ua.LocalizedText("a"), ua.LocalizedText("b")], ["a", "b"]),
    (VT.String, [], []),
]


@pytest.mark.parametrize(
    ("variant_type", "raw", "expected"),
    VALUES,
    ids=[f"{v[0].name}-{i}" for i, v in enumerate(VALUES)],
)
def test_every_type_maps_to_a_json_value(
    variant_type: ua.VariantType, raw: Any, expected: Any
) -> None:
    value = convert_variant(ua.Variant(raw, variant_type))
    assert value == expected
    assert type(value) is type(expected)
    assert orjson.loads(orjson.dumps(value)) == expected


@pytest.mark.parametrize(
    "variant_type", [VT.ExtensionObject, VT.DataValue, VT.Variant, VT.DiagnosticInfo]
)
def test_structures_are_unsupported(variant_type: ua.VariantType) -> None:
    with pytest.raises(UnsupportedValue, match=variant_type.name):
        convert_variant(ua.Variant(object(), variant_type))


# (status code, quality, reason)
STATUSES = [
    (StatusCodes.Good, Quality.GOOD, None),
    (StatusCodes.GoodClamped, Quality.GOOD, None),
    (StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN, "UncertainSensorNotAccurate"),
    (StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN, "UncertainLastUsableValue"),
    (StatusCodes.BadSensorFailure, Quality.BAD, "BadSensorFailure"),
    (StatusCodes.BadNodeIdUnknown, Quality.BAD, "BadNodeIdUnknown"),
    (StatusCodes.BadCommunicationError, Quality.BAD, "BadCommunicationError"),
    (0xC0000000, Quality.BAD, "0xC0000000"),
]


@pytest.mark.parametrize(
    ("code", "quality", "reason"), STATUSES, ids=[s[2] or "Good" for s in STATUSES]
)
def test_status_code_gives_quality_and_reason(
    code: int, quality: Quality, reason: str | None
) -> None:
    assert quality_of(code) == (quality, reason)


def test_status_names() -> None:
    assert status_name(StatusCodes.BadUserAccessDenied) == "BadUserAccessDenied"
    assert status_name(0x81230000) == "0x81230000"
    assert status_name(StatusCodes.BadSensorFailure | 0x0400) == "BadSensorFailure"


def _data(
    value: Any,
    variant_type: ua.VariantType = VT.Double,
    status: int = StatusCodes.Good,
    source: datetime | None = None,
    server: datetime | None = None,
) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value, variant_type),
        StatusCode=ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=source,  # type: ignore[arg-type]  # asyncua asks for its DateTime
        ServerTimestamp=server,  # type: ignore[arg-type]
    )


SOURCE = ua.DateTime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
SERVER = ua.DateTime(2026, 1, 1, 0, 0, 2, 500000, tzinfo=UTC)


def test_readings_carry_quality_reason_and_count_the_good() -> None:
    readings, good = readings_from(
        "press",
        ["speed", "torque", "encoder", "blob", "label"],
        [
            _data(1450.5, source=SOURCE),
            _data(1.25, status=StatusCodes.UncertainSensorNotAccurate, source=SOURCE),
            _data(None, VT.Null, status=StatusCodes.BadSensorFailure, source=SOURCE),
            _data(object(), VT.ExtensionObject, source=SOURCE),
            _data(ua.LocalizedText("idle"), VT.LocalizedText, source=SOURCE),
        ],
        use_server_timestamp=False,
        received_ns=99,
    )
    assert good == 2
    assert [(r.tag, r.value, r.quality, r.reason) for r in readings] == [
        ("speed", 1450.5, Quality.GOOD, None),
        ("torque", 1.25, Quality.UNCERTAIN, "UncertainSensorNotAccurate"),
        ("encoder", None, Quality.BAD, "BadSensorFailure"),
        ("blob", None, Quality.BAD, "unsupported data type ExtensionObject"),
        ("label", "idle", Quality.GOOD, None),
    ]
    assert {r.device for r in readings} == {"press"}
    assert {r.received_ns for r in readings} == {99}


@pytest.mark.parametrize(
    ("use_server", "source", "server", "expected"),
    [
        (False, SOURCE, SERVER, datetime_ns(SOURCE)),
        (True, SOURCE, SERVER, datetime_ns(SERVER)),
        (False, None, SERVER, datetime_ns(SERVER)),
        (True, SOURCE, None, datetime_ns(SOURCE)),
        (False, None, None, 42),
    ],
    ids=["source", "server", "source-missing", "server-missing", "neither"],
)
def test_timestamp_choice_and_fallbacks(
    use_server: bool, source: datetime | None, server: datetime | None, expected: int
) -> None:
    [reading], _ = readings_from(
        "d", ["t"], [_data(1.0, source=source, server=server)], use_server, received_ns=42
    )
    assert reading.source_ns == expected


def test_datetime_ns_is_exact_to_the_microsecond() -> None:
    assert datetime_ns(SERVER) == 1_767_225_602_500_000_000
    assert datetime_ns(ua.DateTime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1000
