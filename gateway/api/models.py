"""Response and request bodies of the API that are not configuration models themselves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.reading import Value
from gateway.status import DeviceStatus

__all__ = [
    "BULK_MAX",
    "BulkCreated",
    "BulkDevices",
    "Caller",
    "DeviceCounts",
    "DevicePage",
    "DevicePublic",
    "FieldPublic",
    "HistoryPoint",
    "LatestValues",
    "ProfilePublic",
    "ProtocolPublic",
    "StatusPublic",
    "TagHistory",
    "TagValue",
]


class StatusPublic(BaseModel):
    state: str
    last_error: str | None
    last_good_read: int | None = Field(description="ms since the epoch")
    polls: int
    requests: int
    request_errors: int
    values: int
    overruns: int
    skipped_cycles: int
    busy_retries: int
    last_poll_duration_ms: float
    connects: int
    reconnects: int
    line: dict[str, Any] | None = Field(
        default=None,
        description="For a device on a shared Modbus RTU line: usage_pct, unit_usage_pct,"
        " demand_pct, oversubscribed, timeouts, crc_errors, partial_frames, opened",
    )

    @classmethod
    def of(cls, status: DeviceStatus) -> StatusPublic:
        return cls.model_validate(status.public())


class DevicePublic(BaseModel):
    id: str
    type: str
    address: str = Field(description="Where it is reached, in its protocol's words")
    source: Literal["file", "api"] = Field(description="file devices are read-only here")
    enabled: bool
    profile: str | None
    labels: dict[str, str]
    config: dict[str, Any] = Field(description="The device's configuration; secrets masked")
    status: StatusPublic


class FieldPublic(BaseModel):
    """One field of a protocol's device, as a form asks for it."""

    name: str
    kind: Literal["string", "integer", "number"]
    required: bool
    placeholder: str | None = Field(description="Its default, or what it is")


class ProtocolPublic(BaseModel):
    """An installed protocol plugin and what registering one of its devices asks for."""

    type: str
    fields: list[FieldPublic]
    discover: bool = Field(
        default=False,
        description="POST /api/v1/protocols/{type}/discover lists its servers' variables",
    )


class Caller(BaseModel):
    """Who the token is: its name in the config and its role."""

    name: str
    role: Literal["viewer", "operator", "admin"]
    writes: bool = Field(description="Whether this gateway sets values at all (writes.enabled)")


class DevicePage(BaseModel):
    items: list[DevicePublic]
    total: int
    offset: int
    limit: int


class ProfilePublic(BaseModel):
    id: str
    type: str
    source: Literal["file", "api"]
    config: dict[str, Any]
    used_by: list[str]


BULK_MAX = 10_000
"""Devices per bulk registration."""


class BulkDevices(BaseModel):
    """Many devices from profiles: each entry holds what differs (id, address, labels), and
    may name its own ``profile`` instead of the common one."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(default=None, description="The profile of entries naming none")
    devices: list[dict[str, Any]] = Field(min_length=1, max_length=BULK_MAX)


class BulkCreated(BaseModel):
    created: int
    devices: list[str] = Field(description="Their ids, in the order given")


class DeviceCounts(BaseModel):
    total: int
    states: dict[str, int] = Field(description="Devices per state, every state named")


class TagValue(BaseModel):
    value: Value
    quality: str
    ts: int = Field(description="Source time, ms since the epoch")
    reason: str | None = None


class LatestValues(BaseModel):
    device: str
    values: dict[str, TagValue]


class HistoryPoint(BaseModel):
    ts: int
    value: float
    min: float | None = None
    max: float | None = None


class TagHistory(BaseModel):
    device: str
    tag: str
    start: int
    end: int
    bucket_ms: int | None
    points: list[HistoryPoint]
