"""S7 addresses in the notation of the Siemens tools: ``DB1.DBX0.3``, ``DB1.DBW2``, ``MW10``,
``M10.1``, ``I0.1``/``E0.1``, ``QW2``/``AW2``, with an optional leading ``%``.

The size letter says where the value starts and how wide the address is: X a bit, B a byte,
W a word (2 bytes), D a double word (4 bytes). Every mistake is said precisely, for
``gateway check-config``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Area", "S7Address", "parse_address"]


class Area(enum.IntEnum):
    """S7 area codes on the wire."""

    INPUTS = 0x81
    OUTPUTS = 0x82
    MARKERS = 0x83
    DB = 0x84


_AREA_LETTERS = {
    "I": Area.INPUTS,
    "E": Area.INPUTS,  # German: Eingang
    "Q": Area.OUTPUTS,
    "A": Area.OUTPUTS,  # German: Ausgang
    "M": Area.MARKERS,
}
_WIDTH = {"X": 0, "B": 1, "W": 2, "D": 4}
"""Bytes an address of each size letter spans (X: one bit)."""

_DB = re.compile(r"DB(\d+)\.DB([XBWD])(\d+)(?:\.(\d+))?")
_OTHER = re.compile(r"([IEQAM])([XBWD]?)(\d+)(?:\.(\d+))?")
_MAX_DB = 65535
_MAX_BYTE = 65535


@dataclass(frozen=True, slots=True)
class S7Address:
    area: Area
    db: int
    """The DB number (0 outside data blocks)."""
    byte: int
    bit: int | None
    """0..7 for a bit address, else None."""
    size: str
    """The size letter: X, B, W or D."""

    @property
    def width(self) -> int:
        return _WIDTH[self.size]

    def __str__(self) -> str:
        bit = "" if self.bit is None else f".{self.bit}"
        if self.area is Area.DB:
            return f"DB{self.db}.DB{self.size}{self.byte}{bit}"
        letter = {Area.INPUTS: "I", Area.OUTPUTS: "Q", Area.MARKERS: "M"}[self.area]
        size = "" if self.size == "X" else self.size
        return f"{letter}{size}{self.byte}{bit}"


def parse_address(text: str) -> S7Address:
    """The address, or ValueError saying what is wrong with it."""
    source = text.strip().upper().removeprefix("%")
    match = _DB.fullmatch(source)
    if match is not None:
        db, size, byte, bit = int(match[1]), match[2], int(match[3]), match[4]
        if not 1 <= db <= _MAX_DB:
            raise ValueError(f"{text!r}: DB number {db} is out of range (1..{_MAX_DB})")
        return _checked(text, Area.DB, db, size, byte, bit)
    match = _OTHER.fullmatch(source)
    if match is not None:
        area, size, byte, bit = _AREA_LETTERS[match[1]], match[2], int(match[3]), match[4]
        if not size:
            if bit is None:
                raise ValueError(
                    f"{text!r}: give a size (X, B, W or D, as in {match[1]}W{byte}) or a bit"
                    f" (as in {match[1]}{byte}.0)"
                )
            size = "X"
        return _checked(text, area, 0, size, byte, bit)
    if source.startswith("DB") and "." not in source:
        raise ValueError(
            f"{text!r}: a data block address is DB<n>.DB<X|B|W|D><byte>, e.g. DB1.DBW2"
        )
    raise ValueError(
        f"{text!r} is not an S7 address: expected e.g. DB1.DBX0.3, DB1.DBW2, MW10, M10.1,"
        " I0.1 (E0.1), QW2 (AW2)"
    )


def _checked(text: str, area: Area, db: int, size: str, byte: int, bit: str | None) -> S7Address:
    if byte > _MAX_BYTE:
        raise ValueError(f"{text!r}: byte offset {byte} is out of range (0..{_MAX_BYTE})")
    if size == "X":
        if bit is None:
            raise ValueError(f"{text!r}: a bit address needs its bit, e.g. .0 (0..7)")
        if int(bit) > 7:
            raise ValueError(f"{text!r}: bit {bit} does not exist (a byte has bits 0..7)")
        return S7Address(area, db, byte, int(bit), "X")
    if bit is not None:
        raise ValueError(f"{text!r}: only bit addresses (X) take a bit number")
    return S7Address(area, db, byte, None, size)
