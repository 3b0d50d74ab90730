"""What a connector reports for each cycle: the readings and what it took to get them.

A cycle is handed on and let go: the runtime makes the sinks' batch of its readings, and a loop
that yielded or received one drops it (``del cycle``) before waiting for the next. Held in a
local through that wait, every device's last readings stayed alive a whole period (100,000
readings, 12 MiB, at 100 devices × 1000 tags).

Connectors say what happened (requests answered, failed and why, busy answers retried, cycles
skipped); the runtime alone turns that into device state and counters (gateway/health.py), with
the same rules for every protocol. A lost link is not a cycle: the connector raises
ConnectorError and the supervisor reconnects.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.events import Event
from gateway.reading import Reading

__all__ = ["Cycle", "Failure", "FailureKind"]


class FailureKind(enum.StrEnum):
    TIMEOUT = "timeout"
    """No answer in time: the device (or what is behind a converter) is silent."""
    BUSY = "busy"
    """Still busy after the retries (Modbus exception 6, OPC UA BadServerTooBusy...)."""
    REFUSED = "refused"
    """A well-formed refusal: an exception code or a bad status for the whole request."""
    INVALID = "invalid"
    """An answer that could not be decoded or did not fit the request."""


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    reason: str


@dataclass(slots=True)
class Cycle:
    """One poll cycle of one group, or one subscription notification."""

    readings: list[Reading]
    time_ns: int
    """The cycle's timestamp: sinks that publish one message per batch stamp it with this."""
    requests: int = 0
    """Requests made in this cycle, failed ones included, each counted once however often it
    was retried."""
    failures: list[Failure] = field(default_factory=list)
    """One per request that failed for good."""
    retries: int = 0
    """Busy answers that were retried."""
    skipped: int = 0
    """Cycles (or notifications) skipped because the device or the gateway could not keep up."""
    duration_s: float | None = None
    """How long the cycle's requests took (None for notifications)."""
    standing: str | None = None
    """A problem that outlives the cycle (tags the server does not have on this session): the
    device stays degraded while it is reported."""
    line: Mapping[str, object] | None = None
    """The shared line's load and errors, for devices on one (Modbus RTU): see
    connectors/modbus/line.py."""
    events: list[Event] = field(default_factory=list)
    """Events and alarm transitions the device raised since the last cycle (OPC UA)."""
