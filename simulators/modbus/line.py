"""What a serial line does to the frames a unit answers: the time they take on the wire at the
line's baud rate, and the faults of a noisy RS-485 bus (a garbled byte, a frame cut short).

A pseudo-terminal pair moves bytes instantly; a real 19,200 baud line takes 4.2 ms for the
8-byte request and 25-register answer of one read. The simulator waits that long before it
answers, so the gateway's line usage and timeouts mean on the virtual pair what they would
on the real one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["LineFaults", "char_time", "wire_bytes"]

logger = logging.getLogger(__name__)

_RTU_OVERHEAD = 5
"""Unit id, function code, byte count (reads) and CRC around an answer's data."""
_REQUEST = 8
"""A read request, and the answer of a single write (unit, fc, address, value or count, CRC)."""


def char_time(baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character takes: start bit, 8 data bits, parity bit, stop bits."""
    return (1 + 8 + (parity != "N") + stopbits) / baudrate


def wire_bytes(func_code: int, count: int) -> int:
    """Bytes of a request and its answer on the line, both directions together."""
    if func_code in (1, 2):
        return _REQUEST + _RTU_OVERHEAD + (count + 7) // 8
    if func_code in (3, 4, 23):
        return _REQUEST + _RTU_OVERHEAD + 2 * count
    if func_code in (15, 16):
        data = (count + 7) // 8 if func_code == 15 else 2 * count
        return _REQUEST + 1 + data + _REQUEST
    return 2 * _REQUEST


class LineFaults:
    """``trace_packet`` hook of the serial server: every ``garble_every``-th answer of an
    affected unit gets its last CRC byte flipped, every ``truncate_every``-th loses its second
    half (a frame cut short by noise or a dying transceiver)."""

    def __init__(self, garble_every: int, truncate_every: int, units: Iterable[int]) -> None:
        self._garble_every = garble_every
        self._truncate_every = truncate_every
        self._units = frozenset(units)
        self._answers: dict[int, int] = {}
        self.garbled = 0
        self.truncated = 0

    def __call__(self, sending: bool, packet: bytes) -> bytes:
        if not sending or not packet:
            return packet
        unit = packet[0]
        if self._units and unit not in self._units:
            return packet
        answers = self._answers[unit] = self._answers.get(unit, 0) + 1
        if self._garble_every and answers % self._garble_every == 0:
            self.garbled += 1
            logger.info("unit %d: answer %d garbled (bad CRC)", unit, answers)
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        if self._truncate_every and answers % self._truncate_every == 0:
            self.truncated += 1
            logger.info("unit %d: answer %d cut short", unit, answers)
            return packet[: len(packet) // 2]
        return packet
