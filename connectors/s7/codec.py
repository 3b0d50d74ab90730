"""S7 values from and to the bytes of an area, big endian as the PLC stores them.

Decoding works per block (one contiguous byte range of one area): the numeric tags at distinct
offsets are unpacked by one precompiled ``struct`` call; bits, strings and overlapping tags one
by one. Encoding refuses a value that does not fit, with the reason: it never truncates, wraps
or rounds.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from connectors.s7.config import S7DataType, S7Tag

__all__ = ["BlockDecoder", "encode_value"]

_CODES = {
    S7DataType.INT8: "b",
    S7DataType.UINT8: "B",
    S7DataType.INT16: "h",
    S7DataType.UINT16: "H",
    S7DataType.INT32: "i",
    S7DataType.UINT32: "I",
    S7DataType.FLOAT32: "f",
    S7DataType.FLOAT64: "d",
}
_RANGES = {
    S7DataType.INT8: (-(2**7), 2**7 - 1),
    S7DataType.UINT8: (0, 2**8 - 1),
    S7DataType.INT16: (-(2**15), 2**15 - 1),
    S7DataType.UINT16: (0, 2**16 - 1),
    S7DataType.INT32: (-(2**31), 2**31 - 1),
    S7DataType.UINT32: (0, 2**32 - 1),
}
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

Value = bool | int | float | str
_Decoder = Callable[[bytes], Value]


def _scaler(tag: S7Tag) -> Callable[[float], float] | None:
    if (tag.scale, tag.offset) == (1.0, 0.0):
        return None
    scale, offset = tag.scale, tag.offset
    return lambda value: value * scale + offset


def _single(tag: S7Tag, at: int) -> _Decoder:
    """Decoder of one tag ``at`` bytes into its block."""
    data_type = tag.type
    if data_type is S7DataType.BOOL:
        bit = tag.location.bit
        assert bit is not None
        mask = 1 << bit
        return lambda data: bool(data[at] & mask)
    if data_type is S7DataType.STRING:
        assert tag.length is not None
        capacity, encoding = tag.length, tag.encoding

        def string(data: bytes) -> str:
            # The PLC's header: the declared maximum, then the actual length; trust neither
            # beyond what this tag's bytes hold.
            count = min(data[at + 1], data[at], capacity)
            return data[at + 2 : at + 2 + count].decode(encoding, errors="replace")

        return string
    if data_type is S7DataType.CHARS:
        assert tag.length is not None
        end, encoding = at + tag.length, tag.encoding
        return lambda data: data[at:end].rstrip(b"\x00").decode(encoding, errors="replace")
    unpack = struct.Struct(">" + _CODES[data_type]).unpack_from
    return lambda data: unpack(data, at)[0]


class BlockDecoder:
    """The values of the tags located in one block, in their order."""

    def __init__(self, start: int, located: Sequence[tuple[S7Tag, int]]) -> None:
        """``located``: each tag with its first byte (absolute, in the block's area)."""
        fast: list[tuple[int, int]] = []  # (offset in block, index)
        self._slow: list[tuple[int, _Decoder]] = []
        for index, (tag, byte) in enumerate(located):
            at = byte - start
            if tag.type in _CODES:
                fast.append((at, index))
            else:
                self._slow.append((index, _single(tag, at)))
        fast.sort()
        fmt, covered, self._fast_index = ">", 0, []
        for at, index in fast:
            tag = located[index][0]
            if at < covered:  # overlaps the previous one: decoded on its own
                self._slow.append((index, _single(tag, at)))
                continue
            fmt += "x" * (at - covered) + _CODES[tag.type]
            covered = at + tag.size
            self._fast_index.append(index)
        self._unpack = struct.Struct(fmt).unpack_from
        self._count = len(located)
        self._post = [(i, s) for i, (tag, _) in enumerate(located) if (s := _scaler(tag))]

    def decode(self, data: bytes) -> list[Value]:
        values: list[Value] = [False] * self._count
        for index, value in zip(self._fast_index, self._unpack(data), strict=True):
            values[index] = value
        for index, decode in self._slow:
            values[index] = decode(data)
        for index, scale in self._post:
            values[index] = scale(values[index])  # type: ignore[arg-type]
        return values


def encode_value(tag: S7Tag, value: Value) -> bytes:
    """The bytes the PLC stores for ``value`` (engineering units). Not for bools: a bit is
    written by a read-modify-write of its byte (see write.py)."""
    data_type = tag.type
    if data_type is S7DataType.BOOL:
        raise ValueError("a bool is written as a bit of its byte")
    if data_type in (S7DataType.STRING, S7DataType.CHARS):
        return _encode_text(tag, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number ({data_type.value})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    exact = (tag.scale, tag.offset) == (1.0, 0.0)
    raw: int | float = value if exact else (value - tag.offset) / tag.scale
    if data_type in (S7DataType.FLOAT32, S7DataType.FLOAT64):
        if data_type is S7DataType.FLOAT32 and abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{value} is beyond the range of a REAL (±{_FLOAT32_MAX:.4g})")
        return struct.pack(">" + _CODES[data_type], float(raw))
    if isinstance(raw, float):
        nearest = round(raw)
        if not math.isclose(raw, nearest, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"{value} is not a whole {data_type.value} (would be {raw:g})")
        raw = nearest
    low, high = _RANGES[data_type]
    if not low <= raw <= high:
        raise ValueError(f"{value} is out of the range of a {data_type.value}: {low}..{high}")
    return struct.pack(">" + _CODES[data_type], raw)


def _encode_text(tag: S7Tag, value: Value) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    assert tag.length is not None
    try:
        data = value.encode(tag.encoding)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{value!r} is not {tag.encoding}: {exc.reason}") from None
    if len(data) > tag.length:
        raise ValueError(f"{len(data)} bytes do not fit in {tag.length} characters")
    padded = data.ljust(tag.length, b"\x00")
    if tag.type is S7DataType.STRING:
        return bytes((tag.length, len(data))) + padded
    return padded
