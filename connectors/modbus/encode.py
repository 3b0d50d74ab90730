"""Encode a value in engineering units into a tag's registers: the inverse of decode.py.

A value that does not fit is refused with the reason, never truncated or wrapped: an integer
type's range after ``scale``/``offset``, a value between two steps of the scale, a float32
overflow, a string longer than its registers or not in its encoding.
"""

from __future__ import annotations

import math
import struct

from connectors.modbus.config import ByteOrder, DataType, ModbusTag, register_count
from connectors.modbus.decode import STRUCT_CODES, byte_permutation

__all__ = ["encode_value"]

_INTEGER_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


def encode_value(tag: ModbusTag, value: bool | int | float | str) -> list[int]:
    """The registers that ``decode_value(tag, ...)`` reads back as ``value``. Not for bools:
    a coil is written as a bit, a bit of a register by a mask write."""
    if tag.data_type is DataType.BOOL:
        raise ValueError("a bool is written as a coil or a bit, not as registers")
    if tag.data_type is DataType.STRING:
        return _encode_string(tag, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number ({tag.data_type.value})")
    raw = _raw(tag, value)
    packed = struct.pack(">" + STRUCT_CODES[tag.data_type], raw)
    return _registers(_to_wire(packed, register_count(tag), tag.byte_order))


def _raw(tag: ModbusTag, value: int | float) -> int | float:
    """The value as the device stores it: ``(value - offset) / scale``, checked for its type."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    exact = tag.scale == 1.0 and tag.offset == 0.0
    raw: int | float = value if exact else (value - tag.offset) / tag.scale
    if tag.data_type in (DataType.FLOAT32, DataType.FLOAT64):
        raw = float(raw)
        if tag.data_type is DataType.FLOAT32 and abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{value} is beyond the range of a float32 (±{_FLOAT32_MAX:.4g})")
        return raw
    if isinstance(raw, float):
        nearest = round(raw)
        # 42.5 / 0.1 is 424.99999999999994: a step of the scale up to float rounding is exact.
        if not math.isclose(raw, nearest, rel_tol=1e-9, abs_tol=1e-9):
            step = "" if exact else f" with scale {tag.scale:g} and offset {tag.offset:g}"
            raise ValueError(
                f"{value} is not a whole {tag.data_type.value}{step} (would be {raw:g}); never"
                " rounded"
            )
        raw = nearest
    low, high = _INTEGER_RANGES[tag.data_type]
    if not low <= raw <= high:
        where = "" if exact else f" (as stored: {raw})"
        raise ValueError(
            f"{value} is out of the range of a {tag.data_type.value}{where}: {low}..{high}"
        )
    return raw


def _encode_string(tag: ModbusTag, value: object) -> list[int]:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    try:
        data = value.encode(tag.encoding)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{value!r} is not {tag.encoding}: {exc.reason}") from None
    size = register_count(tag)
    if len(data) > 2 * size:
        raise ValueError(f"{len(data)} bytes do not fit in {size} registers ({2 * size} bytes)")
    data = data.ljust(2 * size, b"\x00")
    # As decode.py reads it: the words in order, only the bytes within a word maybe swapped.
    order = ByteOrder.BADC if tag.byte_order in (ByteOrder.BADC, ByteOrder.DCBA) else ByteOrder.ABCD
    return _registers(_to_wire(data, size, order))


def _to_wire(big_endian: bytes, registers: int, order: ByteOrder) -> bytes:
    wire = bytearray(2 * registers)
    for position, source in enumerate(byte_permutation(registers, order)):
        wire[source] = big_endian[position]
    return bytes(wire)


def _registers(wire: bytes) -> list[int]:
    return list(struct.unpack(f">{len(wire) // 2}H", wire))
