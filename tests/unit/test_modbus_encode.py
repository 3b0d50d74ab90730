"""Encoding is the inverse of decoding: every type and byte order round-trips, and what does
not fit is refused with the reason, never truncated."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.modbus.config import ByteOrder, DataType, ModbusTag
from connectors.modbus.decode import decode_value
from connectors.modbus.encode import encode_value

RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


def tag(data_type: DataType, order: ByteOrder = ByteOrder.ABCD, **extra: Any) -> ModbusTag:
    return ModbusTag(name="t", address=0, data_type=data_type, byte_order=order, **extra)


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize("data_type", list(RANGES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_integers_round_trip(data_type: DataType, order: ByteOrder, data: st.DataObject) -> None:
    low, high = RANGES[data_type]
    value = data.draw(st.integers(low, high) | st.sampled_from([low, high, 0]))
    registers = encode_value(tag(data_type, order), value)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_value(tag(data_type, order), registers) == value


@pytest.mark.parametrize("order", list(ByteOrder))
@settings(max_examples=60, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trips(order: ByteOrder, value: float) -> None:
    assert (
        decode_value(
            tag(DataType.FLOAT64, order), encode_value(tag(DataType.FLOAT64, order), value)
        )
        == value
    )


@pytest.mark.parametrize("order", list(ByteOrder))
@settings(max_examples=60, deadline=None)
@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trips(order: ByteOrder, value: float) -> None:
    decoded = decode_value(
        tag(DataType.FLOAT32, order), encode_value(tag(DataType.FLOAT32, order), value)
    )
    assert decoded == value


@pytest.mark.parametrize("order", list(ByteOrder))
def test_known_wire_images(order: ByteOrder) -> None:
    """0x11223344 as each byte order puts it on the wire."""
    expected = {
        ByteOrder.ABCD: [0x1122, 0x3344],
        ByteOrder.BADC: [0x2211, 0x4433],
        ByteOrder.CDAB: [0x3344, 0x1122],
        ByteOrder.DCBA: [0x4433, 0x2211],
    }[order]
    assert encode_value(tag(DataType.UINT32, order), 0x11223344) == expected


def test_scale_and_offset_are_undone_exactly() -> None:
    setpoint = tag(DataType.INT16, scale=0.1, offset=-20.0)
    assert encode_value(setpoint, 42.5) == [625]
    assert decode_value(setpoint, [625]) == 42.5
    assert encode_value(tag(DataType.UINT16, scale=0.1), 21.7) == [217]


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize("text", ["", "A", "AB", "Line 2 / Press", "0123456789"])
def test_strings_round_trip(order: ByteOrder, text: str) -> None:
    string = tag(DataType.STRING, order, length=8)
    assert decode_value(string, encode_value(string, text)) == text


@pytest.mark.parametrize(
    ("model", "value", "message"),
    [
        (tag(DataType.INT16), 32768, "out of the range of a int16: -32768..32767"),
        (tag(DataType.UINT16), -1, "out of the range of a uint16"),
        (tag(DataType.UINT64), 2**64, "out of the range of a uint64"),
        (tag(DataType.INT16, scale=0.1), 42.55, "not a whole int16 with scale 0.1"),
        (tag(DataType.INT16, scale=0.1), 4000.0, "as stored: 40000"),
        (tag(DataType.INT16), 1.5, "not a whole int16"),
        (tag(DataType.FLOAT32), 1e39, "beyond the range of a float32"),
        (tag(DataType.FLOAT64), float("nan"), "not a finite number"),
        (tag(DataType.INT32), True, "not a number"),
        (tag(DataType.INT32), "12", "not a number"),
        (tag(DataType.STRING, length=2), "abcde", "5 bytes do not fit in 2 registers"),
        (tag(DataType.STRING, length=2), "é", "not ascii"),
        (tag(DataType.STRING, length=2), 12, "not a string"),
    ],
)
def test_what_does_not_fit_is_refused_never_truncated(
    model: ModbusTag, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_value(model, value)


def test_a_big_uint64_keeps_every_digit() -> None:
    value = 18446744073709551615
    registers = encode_value(tag(DataType.UINT64), value)
    assert registers == [0xFFFF] * 4
    assert struct.pack(">4H", *registers) == b"\xff" * 8
