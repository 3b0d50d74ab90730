"""The ``fleet`` section: whether this gateway takes a desired configuration over MQTT."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FleetConfig"]


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False,
        description="Take the devices and profiles from {prefix}/{gateway}/config/desired"
        " (retained) and report on .../config/reported; restrict writes to it by broker ACLs",
    )
    sink: str | None = Field(
        default=None,
        min_length=1,
        description="The MQTT sink that carries it (default: the only one)",
    )
