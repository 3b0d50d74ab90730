"""Events and alarms a device raises (OPC UA events and conditions): the second thing, beside
readings, that crosses from connectors into the runtime and sinks.

A reading is the latest value of a tag and may be replaced by the next; an event happens once
and each one is delivered (one MQTT message, one point) and kept in a short per-device list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Event"]


@dataclass(frozen=True, slots=True)
class Event:
    device: str
    event_id: str
    """The server's EventId, hex: names this occurrence (acknowledging a condition needs it)."""
    event_type: str
    """The event type's browse name (``OffNormalAlarmType``), or its node id if unnamed."""
    source: str
    """SourceName: what raised it (``Boiler1.Temperature``)."""
    message: str
    severity: int
    """1 (least) .. 1000 (most severe), as OPC UA defines it."""
    time_ns: int
    """When it happened, by the server's clock."""
    received_ns: int
    condition_id: str | None = None
    """The condition's node id, for conditions (alarms): what acknowledge and confirm address."""
    condition: str | None = None
    """ConditionName."""
    active: bool | None = None
    acked: bool | None = None
    confirmed: bool | None = None
    retain: bool | None = None
    """True while the condition is of interest (active or not yet acknowledged)."""
    refresh: bool = False
    """Re-sent by a ConditionRefresh (the state after a reconnect), not a new occurrence."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (MQTT payload, API): conditions' fields only where they apply."""
        body: dict[str, Any] = {
            "device": self.device,
            "event_id": self.event_id,
            "type": self.event_type,
            "source": self.source,
            "message": self.message,
            "severity": self.severity,
            "time_ns": self.time_ns,
            "received_ns": self.received_ns,
        }
        if self.condition_id is not None:
            body |= {
                "condition_id": self.condition_id,
                "condition": self.condition,
                "active": self.active,
                "acked": self.acked,
                "confirmed": self.confirmed,
                "retain": self.retain,
            }
        if self.refresh:
            body["refresh"] = True
        return body
