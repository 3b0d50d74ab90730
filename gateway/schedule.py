"""The one poll scheduler: when each group of a device is due, and what counts as an overrun.

Each group's polls keep a phase of their own (stable for a device across restarts), so hundreds
of devices with one interval spread their polls over it instead of all polling in the same
instant. The first poll too, within at most ``FIRST_POLL_SPREAD`` seconds: polled at once at
start, 100 devices × 1000 tags piled 100,000 readings into one instant, and the memory they
took at that moment (11 MiB of the gateway's peak of 89) was never given back.

A cycle that could not start on time is skipped, never queued: polls never overlap and
readings never age. A cycle in which the device answered nothing is not overload: the next one
is simply scheduled from its end, and nothing is counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = ["FIRST_POLL_SPREAD", "PollScheduler", "phase_of"]

FIRST_POLL_SPREAD = 1.0
"""Seconds over which the first polls spread (the interval, if shorter)."""


def phase_of(key: str, interval: float) -> float:
    """Where in the interval the polls keyed ``key`` (device/group) fall."""
    return interval * zlib.crc32(key.encode()) / 2**32


class PollScheduler:
    def __init__(self, intervals: Sequence[float], phases: Sequence[float], begin: float) -> None:
        self._intervals = list(intervals)
        self._phases = list(phases)
        self._begin = begin
        self._due = [
            begin + phase / interval * min(interval, FIRST_POLL_SPREAD)
            for interval, phase in zip(intervals, phases, strict=True)
        ]
        self._polled = [False] * len(intervals)

    def next(self) -> tuple[int, float]:
        """The group due first and when (loop time)."""
        index = min(range(len(self._due)), key=self._due.__getitem__)
        return index, self._due[index]

    def defer(self, until: float) -> None:
        """No poll of any group before ``until`` (loop time)."""
        self._due = [max(due, until) for due in self._due]

    def done(self, index: int, finished: float, answered: bool) -> int:
        """Schedule the group's next poll after one that ended at ``finished``; the cycles
        skipped because it ended late (0 when the device answered nothing)."""
        interval = self._intervals[index]
        if not self._polled[index]:
            self._polled[index] = True
            due = self._begin + self._phases[index]
            while due <= finished:
                due += interval
            self._due[index] = due
            return 0
        due = self._due[index] + interval
        missed = 0
        if due < finished:
            missed = int((finished - due) // interval) + 1
            due += missed * interval
        self._due[index] = due
        return missed if answered else 0
