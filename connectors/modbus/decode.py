"""Decode a block of registers into typed tag values, all tags of a block at once.

Per block, big-endian numeric tags that do not overlap are unpacked by a single precompiled
``struct`` call; other byte orders get their bytes reordered first. Everything that can be
decided from the config is decided once, when the block decoder is built, not per poll.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter

from connectors.modbus.config import ByteOrder, DataType, ModbusTag, register_count

__all__ = ["STRUCT_CODES", "BlockDecoder", "byte_permutation", "decode_value"]

STRUCT_CODES = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT64: "d",
}

RegisterValue = bool | int | float | str
_Decoder = Callable[[bytes], RegisterValue]


def byte_permutation(registers: int, order: ByteOrder) -> list[int]:
    """For each big-endian byte position, the position it has in the wire bytes."""
    swap_words = order in (ByteOrder.CDAB, ByteOrder.DCBA)
    swap_bytes = order in (ByteOrder.BADC, ByteOrder.DCBA)
    positions = []
    for k in range(2 * registers):
        word, byte = divmod(k, 2)
        source_word = registers - 1 - word if swap_words else word
        source_byte = 1 - byte if swap_bytes else byte
        positions.append(2 * source_word + source_byte)
    return positions


def _tag_decoder(tag: ModbusTag, offset: int) -> _Decoder:
    """Decoder of one tag located ``offset`` registers into the block's bytes."""
    size = register_count(tag)
    base = 2 * offset
    if tag.data_type is DataType.BOOL:
        assert tag.bit is not None
        word = struct.Struct(">H")
        mask = 1 << tag.bit
        return lambda raw: bool(word.unpack_from(raw, base)[0] & mask)
    picks = [base + p for p in byte_permutation(size, tag.byte_order)]
    if tag.data_type is DataType.STRING:
        encoding = tag.encoding
        # A string's words are in reading order; only the bytes within a word may be swapped.
        if tag.byte_order in (ByteOrder.BADC, ByteOrder.DCBA):
            picks = [base + p for p in byte_permutation(size, ByteOrder.BADC)]
        else:
            picks = list(range(base, base + 2 * size))
        pick = itemgetter(*picks)

        def decode_string(raw: bytes) -> str:
            text = bytes(pick(raw)).split(b"\x00", 1)[0]
            return text.decode(encoding, errors="replace").rstrip(" ")

        return decode_string
    unpack = struct.Struct(">" + STRUCT_CODES[tag.data_type]).unpack
    if tag.byte_order is ByteOrder.ABCD:
        end = base + 2 * size
        return lambda raw: unpack(raw[base:end])[0]
    pick = itemgetter(*picks)
    return lambda raw: unpack(bytes(pick(raw)))[0]


def _scaler(tag: ModbusTag) -> Callable[[float], float] | None:
    if tag.scale == 1.0 and tag.offset == 0.0:
        return None
    scale, offset = tag.scale, tag.offset
    divisor = round(1 / scale) if scale else 0
    if divisor > 1 and math.isclose(1 / divisor, scale, rel_tol=1e-12):
        # 217 / 10 is 21.7 exactly as a float; 217 * 0.1 is 21.700000000000003.
        return lambda value: value / divisor + offset
    return lambda value: value * scale + offset


class BlockDecoder:
    """Decodes the registers of one read request into the values of its tags, in tag order."""

    __slots__ = ("_all_fast", "_block", "_count", "_fast", "_fast_index", "_post", "_size", "_slow")

    def __init__(self, address: int, count: int, tags: Sequence[tuple[ModbusTag, int]]) -> None:
        """``tags`` are (tag, protocol address) pairs, all inside [address, address + count)."""
        self._count = count
        self._size = len(tags)
        self._block = struct.Struct(f">{count}H")
        fast_format = ">"
        self._fast_index: list[int] = []
        self._slow: list[tuple[int, _Decoder]] = []
        covered = 0
        for index, (tag, tag_address) in sorted(enumerate(tags), key=lambda it: it[1][1]):
            offset = tag_address - address
            code = STRUCT_CODES.get(tag.data_type)
            if code is not None and tag.byte_order is ByteOrder.ABCD and offset >= covered:
                fast_format += "x" * (2 * (offset - covered)) + code
                covered = offset + register_count(tag)
                self._fast_index.append(index)
            else:
                self._slow.append((index, _tag_decoder(tag, offset)))
        self._fast = struct.Struct(fast_format).unpack_from if self._fast_index else None
        self._post = [(i, s) for i, (tag, _) in enumerate(tags) if (s := _scaler(tag)) is not None]
        # The common case, numeric big-endian tags in address order: one unpack is the answer.
        self._all_fast = self._fast_index == list(range(self._size)) and not self._post

    def decode(self, registers: Sequence[int]) -> list[RegisterValue]:
        raw = self._block.pack(*registers[: self._count])
        if self._all_fast:
            return list(self._fast(raw))  # type: ignore[misc]
        values: list[RegisterValue] = [0] * self._size
        if self._fast is not None:
            for index, value in zip(self._fast_index, self._fast(raw), strict=True):
                values[index] = value
        for index, decoder in self._slow:
            values[index] = decoder(raw)
        for index, scale in self._post:
            values[index] = scale(values[index])  # type: ignore[arg-type]
        return values


def decode_value(tag: ModbusTag, registers: Sequence[int]) -> RegisterValue:
    """Decode one tag from its own registers (for tests and the control plane)."""
    return BlockDecoder(0, len(registers), [(tag, 0)]).decode(registers)[0]
