"""Configuration of OPC UA devices, their groups (subscription or polling), tags and event
subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from connectors.opcua.nodes import BrowsePath, NodeRef, parse_browse_path, parse_node_id
from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.errors import ConfigProblem
from gateway.tags import TagBase

__all__ = [
    "DataChangeFilterConfig",
    "OpcUaDeviceConfig",
    "OpcUaEndpointConfig",
    "OpcUaEventsConfig",
    "OpcUaGroup",
    "OpcUaProfile",
    "OpcUaTag",
    "SecurityConfig",
    "check_groups",
]


def _node_id(text: str) -> str:
    parse_node_id(text)
    return text


def _browse_path(text: str) -> str:
    parse_browse_path(text)
    return text


class OpcUaTag(TagBase):
    """A variable, by node id or by browse path from its group's start node."""

    node: str | None = Field(default=None, description="e.g. nsu=urn:plc;s=Line1.Speed")
    path: str | None = Field(default=None, description="e.g. Plant/Line1/Filler/Speed")

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str | None) -> str | None:
        return None if value is None else _node_id(value)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        return None if value is None else _browse_path(value)

    @model_validator(mode="after")
    def _one_address(self) -> Self:
        if (self.node is None) == (self.path is None):
            raise ValueError("give either 'node' (a node id) or 'path' (a browse path)")
        return self

    @property
    def node_ref(self) -> NodeRef | None:
        return None if self.node is None else parse_node_id(self.node)

    @property
    def browse_path(self) -> BrowsePath | None:
        return None if self.path is None else parse_browse_path(self.path)


class DataChangeFilterConfig(BaseModel):
    """The server-side data-change filter of a subscription's monitored items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: Literal["status", "status_value", "status_value_timestamp"] = "status_value"
    absolute: float | None = Field(default=None, ge=0, description="Absolute deadband")
    percent: float | None = Field(
        default=None, gt=0, le=100, description="Percent of the variable's EURange"
    )

    @model_validator(mode="after")
    def _one_deadband(self) -> Self:
        if self.absolute is not None and self.percent is not None:
            raise ValueError("give at most one of 'absolute' or 'percent'")
        return self


_SUBSCRIPTION_ONLY = ("sampling_interval", "queue_size", "filter")


class OpcUaGroup(GroupBase):
    """Tags read together: one subscription, or one Read per poll (split by MaxNodesPerRead)."""

    mode: Literal["subscription", "polling"] = "subscription"
    interval: float = Field(
        default=1.0, ge=0.01, le=86400, description="Publishing interval or poll period, seconds"
    )
    sampling_interval: float | None = Field(
        default=None, ge=0, le=86400, description="Seconds; default: the publishing interval"
    )
    queue_size: int = Field(default=1, ge=1, le=10000, description="Per monitored item")
    filter: DataChangeFilterConfig | None = None
    timestamps: Literal["source", "server"] = "source"
    namespace: str | None = Field(
        default=None, min_length=1, description="URI of unqualified browse names in 'path'"
    )
    start_node: str = Field(default="i=85", description="Where browse paths start (Objects)")
    tags: list[OpcUaTag] = Field(min_length=1)

    @field_validator("start_node")
    @classmethod
    def _check_start(cls, value: str) -> str:
        return _node_id(value)

    @model_validator(mode="after")
    def _mode_options(self) -> Self:
        if self.mode == "polling":
            given = [name for name in _SUBSCRIPTION_ONLY if name in self.model_fields_set]
            if given:
                raise ValueError(f"{', '.join(given)}: only for mode subscription")
        return self


def _event_type(text: str) -> str:
    """A node id, or the browse name of a standard (ns=0) type such as ``AlarmConditionType``."""
    try:
        parse_node_id(text)
    except ValueError:
        if "=" in text:
            raise  # meant as a node id: say what is wrong with it
        # Only configs that name a type pay for asyncua's import here; its devices need it anyway.
        from asyncua.ua.object_ids import ObjectIds

        if not (text.endswith("Type") and isinstance(getattr(ObjectIds, text, None), int)):
            raise ValueError(
                f"{text!r} is neither a node id nor the name of a standard OPC UA type"
                " (e.g. BaseEventType, AlarmConditionType, i=2915)"
            ) from None
    return text


class OpcUaEventsConfig(BaseModel):
    """One event subscription: events (and alarm transitions) of ``node`` and what is below it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(default="i=2253", description="The notifier; default the Server object")
    types: list[Annotated[str, AfterValidator(_event_type)]] = Field(
        default=[],
        description="Event types (node ids or standard names like AlarmConditionType); empty: all",
    )
    min_severity: int = Field(default=0, ge=0, le=1000, description="Lowest Severity delivered")
    interval: float = Field(default=1.0, ge=0.01, le=86400, description="Publishing interval, s")
    queue_size: int = Field(default=1000, ge=1, le=100_000, description="Events the server queues")
    refresh: bool = Field(
        default=True, description="ConditionRefresh after every (re)subscribe: the alarms' state"
    )

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str) -> str:
        return _node_id(value)


class OpcUaProfile(ProfileBase):
    type: Literal["opcua"]
    groups: list[OpcUaGroup] = Field(min_length=1)


class SecurityConfig(BaseModel):
    """Message security and the trust of server certificates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] | None = Field(
        default=None, description="Default: None for policy None, else SignAndEncrypt"
    )
    certificate: Path | None = Field(
        default=None, description="Client certificate (DER or PEM); default: generated"
    )
    private_key: Path | None = None
    trust_dir: Path | None = Field(
        default=None,
        description="Trusted server certificates; default {data_dir}/opcua/pki/trusted",
    )
    trust_on_first_use: bool = Field(
        default=False, description="Trust (and store) a server certificate never seen before"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.policy == "None" and self.mode not in (None, "None"):
            raise ValueError(f"mode {self.mode} needs a security policy (Basic256Sha256)")
        if self.policy != "None" and self.mode == "None":
            raise ValueError(f"policy {self.policy} needs mode Sign or SignAndEncrypt")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both 'certificate' and 'private_key', or neither")
        return self

    @property
    def effective_mode(self) -> Literal["None", "Sign", "SignAndEncrypt"]:
        if self.mode is not None:
            return self.mode
        return "None" if self.policy == "None" else "SignAndEncrypt"


class OpcUaEndpointConfig(BaseModel):
    """How to reach and log in to one OPC UA server (shared by devices and ``gateway browse``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        pattern=r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$",
        description="opc.tcp://host:port[/path]",
        examples=["opc.tcp://10.0.0.20:4840"],
    )
    security: SecurityConfig = SecurityConfig()
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    timeout: float = Field(default=5.0, gt=0, le=300, description="Seconds per request")
    keepalive: float = Field(
        default=5.0,
        ge=0.1,
        le=600,
        description="Seconds between health checks; a silent subscription is lost after ~3x",
    )
    session_timeout: float = Field(default=60.0, ge=1, le=86400, description="Seconds")

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password', or neither")
        return self


class OpcUaDeviceConfig(DeviceBase, OpcUaEndpointConfig):
    type: Literal["opcua"]
    max_nodes_per_read: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Nodes per Read; default: the server's MaxNodesPerRead",
    )
    groups: list[OpcUaGroup] | None = None
    events: list[OpcUaEventsConfig] = Field(
        default=[], description="Event subscriptions (alarms and conditions, batch events...)"
    )

    @property
    def address(self) -> str:
        return self.endpoint


def check_groups(groups: Sequence[OpcUaGroup], where: str) -> list[ConfigProblem]:
    """What a group alone cannot check: unqualified browse names need the group's namespace."""
    problems = []
    for g, group in enumerate(groups):
        if group.namespace is not None:
            continue
        for t, tag in enumerate(group.tags):
            path = tag.browse_path
            if path is not None and not path.qualified:
                problems.append(
                    ConfigProblem(
                        f"{where}.groups[{g}].tags[{t}].path",
                        "a browse name without a namespace index (e.g. '2:Filler') needs the"
                        " group's 'namespace' URI",
                    )
                )
    return problems
