"""One Modbus line shared by several units: whose request goes next, the silence between
frames, and how busy the line is.

A serial RS-485 line has one master and carries one frame at a time. The gateway opens one
link per port (connectors/modbus/link.py) and hands the line to one request at a time: the
waiting one of highest priority first, in arrival order among equals. Each unit keeps at most
one request waiting, so a line that is asked for more than it can carry never queues without
bound: the low-priority units' polls start late and are skipped (see gateway/schedule.py),
the high-priority ones keep their interval.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = [
    "WRITE_PRIORITY",
    "LineLoad",
    "LineTurns",
    "answer_bytes",
    "char_time",
    "frame_gap",
    "read_time",
]

WRITE_PRIORITY = 0
"""Writes and connects go before any poll (polls have priority 1..9)."""
_REQUEST_BYTES = 8
"""A read request: unit, function, address, count, CRC."""
_ANSWER_OVERHEAD = 5
"""Unit, function, byte count and CRC around the data of a read's answer."""
_USAGE_WINDOW_S = 10.0


def char_time(baudrate: int, parity: str, stopbits: int) -> float:
    """Seconds one character takes on the wire: start bit, 8 data bits, parity, stop bits."""
    return (1 + 8 + (parity != "N") + stopbits) / baudrate


def frame_gap(baudrate: int, char_s: float) -> float:
    """The silence that ends a frame: 3.5 characters, and a fixed 1.75 ms above 19,200 baud
    (Modbus over serial line, 2.5.1.1)."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_s


def answer_bytes(is_bits: bool, count: int) -> int:
    """Length of a read's answer frame."""
    return _ANSWER_OVERHEAD + ((count + 7) // 8 if is_bits else 2 * count)


def read_time(is_bits: bool, count: int, char_s: float, gap_s: float) -> float:
    """Seconds one read holds the line at best: request, answer and the gaps after each."""
    return (_REQUEST_BYTES + answer_bytes(is_bits, count)) * char_s + 2 * gap_s


class LineTurns:
    """A lock handed to the waiting request of highest priority (lowest number) first.

    ``async with turns`` takes a turn at WRITE_PRIORITY; ``async with turns.at(p)`` at ``p``.
    """

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0

    def at(self, priority: int) -> _Turn:
        return _Turn(self, priority)

    async def acquire(self, priority: int) -> None:
        if not self._busy and not self._waiting:
            self._busy = True
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._arrivals += 1
        heapq.heappush(self._waiting, (priority, self._arrivals, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just before the cancellation: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)  # the line stays busy: handed over
                return
        self._busy = False

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, granted in self._waiting if not granted.done())

    async def __aenter__(self) -> None:
        await self.acquire(WRITE_PRIORITY)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclass(slots=True)
class _Turn:
    turns: LineTurns
    priority: int

    async def __aenter__(self) -> None:
        await self.turns.acquire(self.priority)

    async def __aexit__(self, *exc: object) -> None:
        self.turns.release()


class LineLoad:
    """What the line carried: the share of time it was busy with requests (measured over the
    last full window of 10 s), the share the configured polls ask for (estimated from the
    frames' lengths at the baud rate), and the errors only a line has."""

    def __init__(self, endpoint: str, baudrate: int | None) -> None:
        self.endpoint = endpoint
        self.baudrate = baudrate
        self.requests = 0
        self.timeouts = 0
        self.crc_errors = 0
        self.partial_frames = 0
        self.opened = 0
        self._window_start = time.monotonic()
        self._window_busy: dict[int, float] = {}
        """Seconds each unit held the line in the current window."""
        self._usage: dict[int, float] | None = None
        """Each unit's share of the last full window."""
        self._demand: dict[str, float] = {}

    def busy(self, seconds: float, unit: int) -> None:
        """A request to ``unit`` held the line this long (gaps included)."""
        self.requests += 1
        self._window_busy[unit] = self._window_busy.get(unit, 0.0) + seconds
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= _USAGE_WINDOW_S:
            self._usage = {u: busy / elapsed for u, busy in self._window_busy.items()}
            self._window_start = now
            self._window_busy = {}

    def demand(self, user: str, share: float | None) -> None:
        """``user``'s polls ask for ``share`` of the line's time (None: it left)."""
        if share is None:
            self._demand.pop(user, None)
        else:
            self._demand[user] = share

    def usage(self) -> dict[int, float]:
        """Each unit's share of the line's time, over the last full window (until there is
        one, since the start)."""
        if self._usage is not None:
            return self._usage
        elapsed = time.monotonic() - self._window_start
        return {u: busy / elapsed for u, busy in self._window_busy.items()} if elapsed else {}

    def snapshot(self, unit: int) -> dict[str, Any]:
        """The line's part of the status of the device at ``unit``."""
        demand = sum(self._demand.values())
        usage = self.usage()
        return {
            "endpoint": self.endpoint,
            "baudrate": self.baudrate,
            "usage_pct": round(100 * sum(usage.values()), 1),
            "unit_usage_pct": round(100 * usage.get(unit, 0.0), 1),
            "demand_pct": round(100 * demand, 1),
            "oversubscribed": demand > 1.0,
            "units": len(self._demand),
            "requests": self.requests,
            "timeouts": self.timeouts,
            "crc_errors": self.crc_errors,
            "partial_frames": self.partial_frames,
            "opened": self.opened,
        }
