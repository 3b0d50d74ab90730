"""Availability as data: per-device state and counters, published and shown by the API."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DeviceState", "DeviceStatus"]


class DeviceState(enum.StrEnum):
    STARTING = "starting"
    ONLINE = "online"
    DEGRADED = "degraded"
    """Answering, but some requests failed or were answered busy (held for a while)."""
    OFFLINE = "offline"
    DISABLED = "disabled"
    """Configured but switched off (over the API): not polled."""


@dataclass(slots=True)
class DeviceStatus:
    """Mutable status of one device, kept by the runtime from its connector's reports."""

    device: str
    state: DeviceState = DeviceState.STARTING
    last_error: str | None = None
    last_good_read_ns: int | None = None
    polls: int = 0
    requests: int = 0
    request_errors: int = 0
    values: int = 0
    overruns: int = 0
    """Poll cycles that started late because the previous ones took longer than the period."""
    skipped_cycles: int = 0
    """Cycles skipped under overload; a device that does not answer skips none."""
    busy_retries: int = 0
    """Requests retried because the device answered busy."""
    last_poll_duration_s: float = 0.0
    connects: int = 0
    """Connections opened (a link shared with other devices counts for the one that opened it)."""
    reconnects: int = 0
    """Connections lost or refused; each is retried after a backoff."""
    line: Mapping[str, object] | None = None
    """The serial line the device shares with others: how busy, its errors."""

    def public(self) -> dict[str, object]:
        """The JSON shape published on the status topic and returned by the API."""
        return {
            "state": self.state.value,
            "last_error": self.last_error,
            "last_good_read": _ms(self.last_good_read_ns),
            "polls": self.polls,
            "requests": self.requests,
            "request_errors": self.request_errors,
            "values": self.values,
            "overruns": self.overruns,
            "skipped_cycles": self.skipped_cycles,
            "busy_retries": self.busy_retries,
            "last_poll_duration_ms": round(self.last_poll_duration_s * 1000, 3),
            "connects": self.connects,
            "reconnects": self.reconnects,
        } | ({"line": dict(self.line)} if self.line is not None else {})


def _ms(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000
