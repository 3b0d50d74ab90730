"""Decoding tables: every type × byte order against registers written out by hand."""

from __future__ import annotations

import math
import struct

import pytest

from connectors.modbus.config import ByteOrder, DataType, ModbusTag
from connectors.modbus.decode import BlockDecoder, byte_permutation, decode_value


def tag(data_type: str, order: str = "ABCD", **extra: object) -> ModbusTag:
    return ModbusTag.model_validate(
        {"name": "t", "address": 0, "data_type": data_type, "byte_order": order, **extra}
    )


# (data_type, byte_order, registers as they arrive, expected value)
CASES = [
    ("uint16", "ABCD", [0x1234], 0x1234),
    ("uint16", "CDAB", [0x1234], 0x1234),
    ("uint16", "BADC", [0x3412], 0x1234),
    ("uint16", "DCBA", [0x3412], 0x1234),
    ("int16", "ABCD", [0xFB2E], -1234),
    ("int16", "BADC", [0x2EFB], -1234),
    ("int16", "ABCD", [0x8000], -32768),
    ("uint32", "ABCD", [0x1234, 0x5678], 0x12345678),
    ("uint32", "CDAB", [0x5678, 0x1234], 0x12345678),
    ("uint32", "BADC", [0x3412, 0x7856], 0x12345678),
    ("uint32", "DCBA", [0x7856, 0x3412], 0x12345678),
    ("int32", "ABCD", [0xF8A4, 0x32EB], -123456789),
    ("int32", "CDAB", [0x32EB, 0xF8A4], -123456789),
    ("int32", "BADC", [0xA4F8, 0xEB32], -123456789),
    ("int32", "DCBA", [0xEB32, 0xA4F8], -123456789),
    ("float32", "ABCD", [0x42F6, 0xE979], 123.456),
    ("float32", "CDAB", [0xE979, 0x42F6], 123.456),
    ("float32", "BADC", [0xF642, 0x79E9], 123.456),
    ("float32", "DCBA", [0x79E9, 0xF642], 123.456),
    ("float32", "ABCD", [0x3F80, 0x0000], 1.0),
    ("float32", "ABCD", [0xC2C8, 0x0000], -100.0),
    ("uint64", "ABCD", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    ("uint64", "CDAB", [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    ("uint64", "BADC", [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    ("uint64", "DCBA", [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    ("uint64", "ABCD", [0xFFFF] * 4, 2**64 - 1),
    ("int64", "ABCD", [0xFFFF] * 4, -1),
    ("int64", "ABCD", [0xFEDC, 0x0A34, 0x5E08, 0x2C35], -0x0123F5CBA1F7D3CB),
    ("int64", "DCBA", [0x352C, 0x085E, 0x340A, 0xDCFE], -0x0123F5CBA1F7D3CB),
    ("float64", "ABCD", [0x40C8, 0x1CD6, 0xC8B4, 0x3958], 12345.678),
    ("float64", "CDAB", [0x3958, 0xC8B4, 0x1CD6, 0x40C8], 12345.678),
    ("float64", "BADC", [0xC840, 0xD61C, 0xB4C8, 0x5839], 12345.678),
    ("float64", "DCBA", [0x5839, 0xB4C8, 0xD61C, 0xC840], 12345.678),
]


@pytest.mark.parametrize(("data_type", "order", "registers", "expected"), CASES)
def test_decode_table(data_type: str, order: str, registers: list[int], expected: object) -> None:
    value = decode_value(tag(data_type, order), registers)
    if isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-6)
    else:
        assert value == expected
        assert type(value) is int


def wire_registers(data_type: str, order: ByteOrder, value: float) -> list[int]:
    """The registers a device sends for ``value``: packed big endian, then its bytes placed
    in the wire order (an encoder of the test's own, independent of the decoder's tables)."""
    code = {
        "int16": "h",
        "uint16": "H",
        "int32": "i",
        "uint32": "I",
        "int64": "q",
        "uint64": "Q",
        "float32": "f",
        "float64": "d",
    }[data_type]
    big_endian = struct.pack(">" + code, value)
    words = len(big_endian) // 2
    wire = bytearray(len(big_endian))
    for target, source in enumerate(byte_permutation(words, order)):
        wire[source] = big_endian[target]
    return list(struct.unpack(f">{words}H", bytes(wire)))


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        ("int16", -2),
        ("uint16", 65535),
        ("int32", -(2**31)),
        ("uint32", 2**32 - 1),
        ("int64", -(2**63)),
        ("uint64", 2**64 - 1),
        ("float32", 0.5),
        ("float64", math.pi),
    ],
)
def test_round_trip_every_order(order: ByteOrder, data_type: str, value: float) -> None:
    t = tag(data_type, order.value)
    assert decode_value(t, wire_registers(data_type, order, value)) == value


@pytest.mark.parametrize(
    ("registers", "expected"),
    [([0x5349, 0x4D2D, 0x504C, 0x432D, 0x3100], "SIM-PLC-1"), ([0x4142, 0, 0x4344, 0, 0], "AB")],
)
def test_string_stops_at_nul(registers: list[int], expected: str) -> None:
    assert decode_value(tag("string", length=5), registers) == expected


def test_string_with_swapped_bytes() -> None:
    assert decode_value(tag("string", "BADC", length=2), [0x4241, 0x0043]) == "ABC"


def test_string_trailing_spaces_are_trimmed() -> None:
    assert decode_value(tag("string", length=2), [0x4F4B, 0x2020]) == "OK"


@pytest.mark.parametrize(("bit", "expected"), [(0, True), (1, False), (3, True), (15, True)])
def test_bool_from_register_bit(bit: int, expected: bool) -> None:
    assert decode_value(tag("bool", bit=bit), [0b1000_0000_0000_1001]) is expected


@pytest.mark.parametrize(
    ("data_type", "registers", "scale", "offset", "expected"),
    [
        ("int16", [0xFF38], 0.1, 0.0, -20.0),
        ("uint16", [215], 0.1, 0.0, 21.5),
        ("uint16", [1000], 0.01, -5.0, 5.0),
        ("float32", [0x3F80, 0], 2.0, 1.0, 3.0),
    ],
)
def test_scale_and_offset(
    data_type: str, registers: list[int], scale: float, offset: float, expected: float
) -> None:
    t = tag(data_type, scale=scale, offset=offset)
    assert decode_value(t, registers) == pytest.approx(expected)


def test_decimal_scales_give_the_decimal_value() -> None:
    assert decode_value(tag("int16", scale=0.1), [217]) == 21.7
    assert decode_value(tag("uint16", scale=0.01), [12345]) == 123.45
    assert decode_value(tag("uint16", scale=0.25), [3]) == 0.75


def test_byte_permutation_of_cdab_swaps_words() -> None:
    assert byte_permutation(2, ByteOrder.CDAB) == [2, 3, 0, 1]
    assert byte_permutation(2, ByteOrder.BADC) == [1, 0, 3, 2]
    assert byte_permutation(4, ByteOrder.DCBA) == [7, 6, 5, 4, 3, 2, 1, 0]


def test_block_decoder_mixes_types_gaps_and_overlaps() -> None:
    registers = [0] * 12
    registers[0] = 7
    registers[2:4] = [0x42F6, 0xE979]
    registers[4:6] = [0xE979, 0x42F6]
    registers[11] = 0b100
    tags = [
        (ModbusTag(name="a", address=0), 0),
        (ModbusTag(name="f", address=2, data_type=DataType.FLOAT32), 2),
        # the same registers again, seen as two 16-bit values: an overlap
        (ModbusTag(name="hi", address=2), 2),
        (ModbusTag(name="lo", address=3), 3),
        (ModbusTag(name="g", address=4, data_type=DataType.FLOAT32, byte_order=ByteOrder.CDAB), 4),
        (ModbusTag(name="b", address=11, data_type=DataType.BOOL, bit=2), 11),
    ]
    values = BlockDecoder(0, 12, tags).decode(registers)
    assert values[0] == 7
    assert values[1] == pytest.approx(123.456, rel=1e-6)
    assert values[2:4] == [0x42F6, 0xE979]
    assert values[4] == pytest.approx(123.456, rel=1e-6)
    assert values[5] is True


def test_block_decoder_offset_block_and_all_fast_path() -> None:
    tags = [(ModbusTag(name=f"r{i}", address=100 + i), 100 + i) for i in range(125)]
    registers = list(range(1000, 1125))
    assert BlockDecoder(100, 125, tags).decode(registers) == registers


def test_float_nan_survives() -> None:
    value = decode_value(tag("float32"), list(struct.unpack(">2H", struct.pack(">f", math.nan))))
    assert isinstance(value, float)
    assert math.isnan(value)
