"""What every device, profile and group has, whatever its protocol: the base models plugins extend.

A protocol plugin subclasses these with ``type: Literal["<its type>"]``, its own connection
fields and its own group and tag models; the gateway validates, stores and shows them through
these bases only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from gateway.tags import TagBase

__all__ = [
    "DeviceBase",
    "DeviceId",
    "GroupBase",
    "Labels",
    "Measurement",
    "ProfileBase",
]

DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.\-]*$")]

MAX_LABELS = 32
"""Labels per device: they are carried into every message and series (as tags in InfluxDB)."""

Labels = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][\w\-]*$")],
        Annotated[str, Field(max_length=256)],
    ],
    Field(max_length=MAX_LABELS),
]

MAX_TEXT = 1024
"""Any text field of a device, profile or group that sets no tighter bound: a 10 MB host name
is a mistake or an attack, never a device."""


def _valid_measurement(name: str) -> str:
    if name[0] == "#":
        raise ValueError("must not start with '#' (line protocol reads that line as a comment)")
    if name[0] == "_":
        raise ValueError("must not start with '_' (reserved by InfluxDB)")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ValueError("must not contain control characters")
    return name


Measurement = Annotated[
    str, Field(min_length=1, max_length=128), AfterValidator(_valid_measurement)
]
"""A time-series measurement name, as set on a sink, a profile or a device."""


class GroupBase(BaseModel):
    """Tags read together at one interval (a poll period or a publishing interval)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=MAX_TEXT)

    name: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    interval: float = Field(default=1.0, ge=0.01, le=86400, description="Seconds")
    tags: Sequence[TagBase] = Field(min_length=1)


class ProfileBase(BaseModel):
    """A reusable tag list: 300 identical drives are 300 short device entries."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=MAX_TEXT)

    id: DeviceId
    type: str
    description: str | None = None
    measurement: Measurement | None = None
    """Time-series measurement of its devices (None: the sink's default)."""
    groups: Sequence[GroupBase] = Field(min_length=1)


class DeviceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=MAX_TEXT)

    id: DeviceId
    type: str
    enabled: bool = True
    labels: Labels = Field(
        default_factory=dict, description="Site, line, cell...: carried into every sink"
    )
    measurement: Measurement | None = None
    """Time-series measurement (None: the profile's, else the sink's default)."""
    busy_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Times a request answered 'busy' is retried within the cycle",
    )
    profile: str | None = None
    groups: Sequence[GroupBase] | None = None

    @model_validator(mode="after")
    def _profile_or_groups(self) -> Self:
        if (self.profile is None) == (self.groups is None):
            raise ValueError("give either 'profile' or 'groups'")
        return self

    @property
    def address(self) -> str:
        """Where the device is reached, in its protocol's words (for the page and the logs)."""
        return ""

    def connection(self) -> dict[str, object]:
        """The settings that decide how the device is reached (not what is read from it): a
        changed device whose connection is unchanged keeps its link."""
        return self.model_dump(
            exclude={"id", "enabled", "labels", "profile", "groups", "measurement", "busy_retries"}
        )
