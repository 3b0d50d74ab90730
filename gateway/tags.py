"""What every tag has, whatever its protocol: a name, a unit and its report-by-exception rule."""

from __future__ import annotations

import enum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Deadband", "Settable", "TagBase", "TagName", "ValueType"]

Settable = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]
"""An integer a device can hold: int64 to uint64."""

# '/', '+' and '#' would break MQTT topic filters built from tag names; '"' breaks JSON-in-YAML.
TagName = Annotated[str, Field(min_length=1, max_length=128, pattern=r'^[^/+#"\x00-\x1f]+$')]


class ValueType(enum.StrEnum):
    """The type of a tag's values as the gateway reports them (after scaling), for sinks that
    declare types up front (Sparkplug births)."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class Deadband(BaseModel):
    """A value is reported only when it moved by more than this since the last report."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=1024)

    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of 'absolute' or 'percent'")
        return self


class TagBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=1024)

    name: TagName
    unit: str | None = Field(default=None, max_length=32, description="Engineering unit, e.g. degC")
    deadband: Deadband | None = Field(
        default=None, description="Report by exception: publish only changes beyond this."
    )
    heartbeat: float | None = Field(
        default=None,
        gt=0,
        description="Seconds after which an unchanged value is published again.",
    )
    writable: bool = Field(
        default=False, description="May be set from the API or MQTT (with writes.enabled)"
    )
    min: float | None = Field(
        default=None, allow_inf_nan=False, description="Lowest value a write may set"
    )
    max: float | None = Field(
        default=None, allow_inf_nan=False, description="Highest value a write may set"
    )
    allowed: list[bool | Settable | float | str] | None = Field(
        default=None, min_length=1, max_length=256, description="The only values a write may set"
    )

    @model_validator(mode="after")
    def _write_limits(self) -> Self:
        limited = self.min is not None or self.max is not None or self.allowed is not None
        if limited and not self.writable:
            raise ValueError("min, max and allowed limit writes: they need writable: true")
        if self.allowed is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either allowed or min/max, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def value_type(self) -> ValueType | None:
        """The type of this tag's values when its protocol knows it before the first value
        (None: learned from the values, as for OPC UA)."""
        return None

    @property
    def reports_by_exception(self) -> bool:
        return self.deadband is not None or self.heartbeat is not None
