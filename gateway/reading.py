"""The one value type that crosses from connectors into the runtime and sinks."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gateway.events import Event

__all__ = ["Batch", "Quality", "Reading", "Value", "bad_readings", "good_readings"]

Value = bool | int | float | str | list[bool] | list[int] | list[float] | list[str] | None


class Quality(enum.StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Reading(NamedTuple):
    """One normalized value of one tag.

    A NamedTuple rather than a frozen dataclass: it is immutable and slotted like one, and
    costs a third as much to build, which matters at 200k readings per second.
    """

    device: str
    tag: str
    value: Value
    quality: Quality
    source_ns: int
    """When the device produced the value (or when it was polled, for protocols without one)."""
    received_ns: int
    """When the gateway received it."""
    reason: str | None = None
    """Why the quality is not good, in the protocol's words."""


_new_tuple = tuple.__new__
_GOOD = Quality.GOOD
_BAD = Quality.BAD


def good_readings(
    device: str,
    tags: Iterable[str],
    values: Iterable[Value],
    source_ns: int,
    received_ns: int,
) -> list[Reading]:
    """Good readings of one device, one per (tag, value): the connectors' hot path.

    Builds the tuples directly, skipping NamedTuple's Python-level ``__new__``: 0.3 µs
    instead of 0.55 µs per reading.
    """
    return [
        _new_tuple(Reading, (device, tag, value, _GOOD, source_ns, received_ns, None))
        for tag, value in zip(tags, values, strict=True)
    ]


def bad_readings(device: str, tags: Iterable[str], reason: str, source_ns: int) -> list[Reading]:
    """Bad readings of one device, without a value, all for the same reason."""
    received_ns = time.time_ns()
    return [
        _new_tuple(Reading, (device, tag, None, _BAD, source_ns, received_ns, reason))
        for tag in tags
    ]


@dataclass(slots=True)
class Batch:
    """The readings of one device from one poll cycle or one subscription notification."""

    device: str
    readings: list[Reading]
    cycle_ns: int
    """The cycle's timestamp: sinks that publish one message per batch stamp it with this."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The device's labels (site, line...), set by the runtime from its configuration."""
    measurement: str | None = None
    """Where time-series sinks file it (the device's or profile's ``measurement``); None
    means the sink's default."""
    events: list[Event] = field(default_factory=list)
    """Events the device raised (OPC UA alarms...): a batch carries readings or events."""
