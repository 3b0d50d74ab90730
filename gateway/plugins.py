"""The plugin seam: protocols and sinks found through Python entry points.

A package adds a protocol by declaring, in its ``pyproject.toml``::

    [project.entry-points."edge_gateway.connectors"]
    myproto = "mypackage.plugin:PLUGIN"

and a sink under ``edge_gateway.sinks``. The entry point's name is the ``type`` users write in
the config; the object it names satisfies ``ProtocolPlugin`` or ``SinkPlugin``. The gateway's
own Modbus, OPC UA, MQTT, InfluxDB and local store plugins register exactly this way: nothing
under ``gateway/`` imports a protocol or names a sink type.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict

from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.errors import ConfigProblem, GatewayError
from gateway.protocols import Connector, Sink

__all__ = [
    "CONNECTOR_GROUP",
    "SINK_GROUP",
    "CommandProvider",
    "ConnectorFactory",
    "DiscoveredTag",
    "Discoverer",
    "PluginContext",
    "PluginError",
    "Plugins",
    "ProtocolPlugin",
    "RegistrationForm",
    "SinkConfigBase",
    "SinkPlugin",
    "groups_of_type",
    "installed",
]

log = logging.getLogger(__name__)

CONNECTOR_GROUP = "edge_gateway.connectors"
SINK_GROUP = "edge_gateway.sinks"


class PluginError(GatewayError):
    """An installed plugin cannot be loaded or contradicts another."""


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What the gateway gives a plugin to build its connectors or sinks with."""

    gateway_id: str
    data_dir: Path
    """The gateway's data directory: a plugin keeps its own state under it (e.g. a PKI)."""


ConnectorFactory = Callable[[DeviceBase, Sequence[GroupBase]], Connector]
"""Builds the connector of one device from its configuration and its (or its profile's)
groups; resources shared between devices (a link pool, a certificate) live in its closure."""


G = TypeVar("G", bound=GroupBase)


def groups_of_type(groups: Sequence[GroupBase], kind: builtins.type[G], device: str) -> list[G]:
    """A device's groups as its protocol's group model (config validation ensures they are:
    a device and its profile are of one protocol)."""
    typed = [group for group in groups if isinstance(group, kind)]
    if len(typed) != len(groups):
        raise TypeError(f"device {device}: groups of another protocol than {kind.__name__}")
    return typed


class ProtocolPlugin(Protocol):
    """A protocol: its config models, what its config checks need beyond the schema, and its
    connectors."""

    @property
    def type(self) -> str: ...

    @property
    def device_model(self) -> builtins.type[DeviceBase]:
        """With ``type: Literal["<type>"]``."""

    @property
    def profile_model(self) -> builtins.type[ProfileBase]: ...

    def check_groups(
        self, groups: Sequence[GroupBase], where: str, device: DeviceBase | None, context: str
    ) -> list[ConfigProblem]:
        """Problems the schema alone cannot see, with paths under ``where``
        (``devices[3]``, ``profiles[0]``). ``device`` is the device the groups are read from
        (None for a profile on its own); ``context`` is appended to messages about a profile's
        tag that does not fit one of its devices."""

    def connector_factory(self, context: PluginContext) -> ConnectorFactory: ...


class SinkConfigBase(BaseModel):
    """Every sink's config names its ``type`` (the plugin's); the rest is the plugin's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class SinkPlugin(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def config_model(self) -> builtins.type[SinkConfigBase]:
        """With ``type: Literal["<type>"]``."""

    def create(self, name: str, config: SinkConfigBase, context: PluginContext) -> Sink:
        """A sink called ``name`` (the key in the config's ``sinks``)."""


@runtime_checkable
class RegistrationForm(Protocol):
    """Optional: the device fields the page asks for when a device is registered from a
    profile (without it: the device model's required fields)."""

    registration_fields: tuple[str, ...]


@runtime_checkable
class CommandProvider(Protocol):
    """Optional: a plugin that adds a ``gateway <command>`` (OPC UA adds ``browse``)."""

    command: str
    command_help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run_command(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True, slots=True)
class DiscoveredTag:
    """A variable a server offers, as ``Discoverer.discover`` lists it."""

    address: str
    """Where it is read, in the protocol's words (an OPC UA node id)."""
    path: tuple[str, ...]
    """Names from the start of the discovery down to it."""
    data_type: str
    access: str
    """``r``, ``w``, ``rw`` or ``-``."""
    array: bool
    tag: Mapping[str, Any]
    """A tag reading it, valid in the protocol's groups: names unique within one discovery."""


@runtime_checkable
class Discoverer(Protocol):
    """Optional: lists the variables of a server, so a device can be registered by picking
    its tags instead of typing them."""

    @property
    def connection_model(self) -> builtins.type[BaseModel]:
        """The fields that reach and log in to one server (those of the device model)."""

    async def discover(
        self,
        connection: BaseModel,
        start: str | None,
        depth: int,
        limit: int,
        context: PluginContext,
    ) -> list[DiscoveredTag]:
        """At most ``limit`` variables within ``depth`` levels below ``start`` (None: the
        server's usual root). Raises ``ConfigError`` naming ``start`` when it is not a valid or
        known start, and ``ConnectorError`` (one line with the server's address and the reason)
        when the server cannot be reached or browsed."""


class Plugins:
    """The protocols and sinks available to one gateway, by type."""

    def __init__(
        self, protocols: Iterable[ProtocolPlugin] = (), sinks: Iterable[SinkPlugin] = ()
    ) -> None:
        self.protocols: dict[str, ProtocolPlugin] = {}
        self.sinks: dict[str, SinkPlugin] = {}
        for protocol in protocols:
            _refuse_twice(self.protocols, protocol.type, "protocol")
            self.protocols[protocol.type] = protocol
        for sink in sinks:
            _refuse_twice(self.sinks, sink.type, "sink")
            self.sinks[sink.type] = sink

    @classmethod
    def from_entry_points(cls) -> Plugins:
        return cls(
            [
                cast(ProtocolPlugin, _load(ep, "protocol"))
                for ep in entry_points(group=CONNECTOR_GROUP)
            ],
            [cast(SinkPlugin, _load(ep, "sink")) for ep in entry_points(group=SINK_GROUP)],
        )

    def protocol(self, type_: str) -> ProtocolPlugin:
        try:
            return self.protocols[type_]
        except KeyError:
            raise PluginError(f"no protocol plugin {type_!r} is installed") from None

    def sink(self, type_: str) -> SinkPlugin:
        try:
            return self.sinks[type_]
        except KeyError:
            raise PluginError(f"no sink plugin {type_!r} is installed") from None

    def commands(self) -> Mapping[str, CommandProvider]:
        found = [p for p in (*self.protocols.values(), *self.sinks.values())]
        return {p.command: p for p in found if isinstance(p, CommandProvider)}


def _refuse_twice(table: Mapping[str, object], type_: str, what: str) -> None:
    if type_ in table:
        raise PluginError(f"two {what} plugins of type {type_!r} are installed")


def _load(entry: EntryPoint, what: str) -> object:
    source = entry.dist.name if entry.dist is not None else "an unknown distribution"
    try:
        plugin = entry.load()
    except Exception as exc:  # any import error of a third-party plugin: say which one
        raise PluginError(
            f"{what} plugin {entry.name!r} ({entry.value}, from {source}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    type_ = getattr(plugin, "type", None)
    if type_ != entry.name:
        raise PluginError(
            f"{what} plugin {entry.name!r} ({entry.value}, from {source}) says its type is "
            f"{type_!r}: the entry point's name and the plugin's type must be the same"
        )
    return plugin


@functools.cache
def installed() -> Plugins:
    """The plugins of this Python environment (loaded once per process)."""
    return Plugins.from_entry_points()
