"""Report by exception: drop readings that did not change enough since they were last reported.

Per tag: an absolute or percent deadband, and a heartbeat that republishes an unchanged value
after at most that many seconds. A change of quality is always reported. Tags without either
setting pass through untouched; a device without any such tag skips the filter entirely.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.reading import Batch, Quality, Reading, Value
from gateway.tags import TagBase

__all__ = ["ReportFilter"]


class _Rule:
    __slots__ = ("absolute", "heartbeat_ns", "percent")

    def __init__(self, tag: TagBase) -> None:
        deadband = tag.deadband
        self.absolute = deadband.absolute if deadband else None
        self.percent = deadband.percent if deadband else None
        self.heartbeat_ns = int(tag.heartbeat * 1e9) if tag.heartbeat else None

    def changed(self, old: Value, new: Value) -> bool:
        if self.absolute is None and self.percent is None:
            return old != new
        if not isinstance(old, int | float) or not isinstance(new, int | float):
            return old != new
        delta = abs(new - old)
        if self.absolute is not None:
            return delta > self.absolute
        assert self.percent is not None
        return delta > abs(old) * self.percent / 100.0


class ReportFilter:
    def __init__(self, tags: Iterable[TagBase]) -> None:
        self._rules = {tag.name: _Rule(tag) for tag in tags if tag.reports_by_exception}
        self._last: dict[str, tuple[Value, Quality, int]] = {}

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def apply(self, batch: Batch) -> None:
        """Remove from the batch, in place, the readings that are not to be reported."""
        if not self._rules:
            return
        kept: list[Reading] = []
        rules, last = self._rules, self._last
        for reading in batch.readings:
            rule = rules.get(reading.tag)
            if rule is None:
                kept.append(reading)
                continue
            previous = last.get(reading.tag)
            if (
                previous is None
                or previous[1] is not reading.quality
                or rule.changed(previous[0], reading.value)
                or (
                    rule.heartbeat_ns is not None
                    and reading.source_ns - previous[2] >= rule.heartbeat_ns
                )
            ):
                last[reading.tag] = (reading.value, reading.quality, reading.source_ns)
                kept.append(reading)
        batch.readings = kept
