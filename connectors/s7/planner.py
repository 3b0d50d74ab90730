"""Coalescing S7 reads: the tags of a group become the fewest requests the negotiated PDU allows.

1. Tags of one area (one DB, the markers, the inputs, the outputs) whose byte ranges are at
   most ``max_gap`` bytes apart join one *block*, read as one variable.
2. Blocks are packed, in address order, into multi-variable reads: at most ``max_items``
   variables each, with the request and its answer within the PDU (12 bytes of address per
   variable asked; 4 bytes of header, the data and a fill byte after an odd length per
   variable answered). A block too large for one answer is read in parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.s7.address import Area

__all__ = ["Block", "Item", "Part", "ReadRequest", "make_blocks", "pack_requests", "payload_limit"]

_HEADER = 12
"""S7 header of a request (an answer's is 12 too, with its 2 error bytes counted in)."""
_PARAMS = 2
"""Function code and item count."""
_ADDRESS = 12
_ITEM_HEADER = 4


@dataclass(frozen=True, slots=True)
class Item:
    """The bytes of one tag."""

    area: Area
    db: int
    start: int
    size: int
    tag: int
    """The tag's index in its group."""

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class Block:
    """A contiguous byte range of one area, read together and decoded together."""

    area: Area
    db: int
    start: int
    size: int
    items: list[Item] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True, slots=True)
class Part:
    """One variable of a request: ``length`` bytes at ``offset`` into its block."""

    block: int
    """The block's index in the plan."""
    offset: int
    length: int


@dataclass(slots=True)
class ReadRequest:
    parts: list[Part] = field(default_factory=list)


def payload_limit(pdu: int) -> int:
    """The most data one variable can carry in an answer of this PDU size."""
    return pdu - _HEADER - _PARAMS - _ITEM_HEADER


def make_blocks(items: Sequence[Item], max_gap: int, max_size: int) -> list[Block]:
    """Join items of one area that lie at most ``max_gap`` bytes apart, up to ``max_size``
    bytes a block (an item larger than that is a block of its own, read in parts)."""
    blocks: list[Block] = []
    ordered = sorted(items, key=lambda i: (i.area, i.db, i.start, i.size))
    current: Block | None = None
    for item in ordered:
        if (
            current is not None
            and (item.area, item.db) == (current.area, current.db)
            and item.start <= current.end + max_gap
            and max(current.end, item.end) - current.start <= max_size
        ):
            current.size = max(current.end, item.end) - current.start
            current.items.append(item)
            continue
        current = Block(item.area, item.db, item.start, item.size, [item])
        blocks.append(current)
    return blocks


def pack_requests(blocks: Sequence[Block], pdu: int, max_items: int) -> list[ReadRequest]:
    """The blocks' variables packed into as few requests as the PDU allows, in order."""
    limit = payload_limit(pdu)
    parts = [
        Part(index, offset, min(limit, block.size - offset))
        for index, block in enumerate(blocks)
        for offset in range(0, block.size, limit)
    ]
    requests: list[ReadRequest] = []
    current = ReadRequest()
    asked = answered = _HEADER + _PARAMS
    for part in parts:
        # The answer's fill byte after an odd length is only sent between variables: counting
        # it for every variable keeps the estimate on the safe side.
        need = _ITEM_HEADER + part.length + (part.length & 1)
        full = len(current.parts) >= max_items
        if current.parts and (full or asked + _ADDRESS > pdu or answered + need > pdu):
            requests.append(current)
            current = ReadRequest()
            asked = answered = _HEADER + _PARAMS
        current.parts.append(part)
        asked += _ADDRESS
        answered += need
    if current.parts:
        requests.append(current)
    return requests
