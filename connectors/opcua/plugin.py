"""The OPC UA protocol plugin (entry point ``edge_gateway.connectors: opcua``): devices, the
``gateway browse`` command that lists a server's variables, and the same listing for the control
plane's picker (``discover``)."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from connectors.opcua.config import (
    OpcUaDeviceConfig,
    OpcUaEndpointConfig,
    OpcUaGroup,
    OpcUaProfile,
    check_groups,
)
from gateway.devices import DeviceBase, GroupBase
from gateway.errors import ConfigProblem
from gateway.plugins import ConnectorFactory, DiscoveredTag, PluginContext, groups_of_type
from gateway.protocols import Connector

if TYPE_CHECKING:
    from connectors.opcua.security import ClientPki

__all__ = ["PLUGIN", "OpcUaPlugin"]


class OpcUaPlugin:
    type = "opcua"
    device_model = OpcUaDeviceConfig
    profile_model = OpcUaProfile
    connection_model = OpcUaEndpointConfig
    registration_fields = ("endpoint",)
    command = "browse"
    command_help = "list the variables of an OPC UA server"

    def check_groups(
        self, groups: Sequence[GroupBase], where: str, device: DeviceBase | None, context: str
    ) -> list[ConfigProblem]:
        typed = [group for group in groups if isinstance(group, OpcUaGroup)]
        return check_groups(typed, where)

    def connector_factory(self, context: PluginContext) -> ConnectorFactory:
        """All OPC UA devices share one client certificate, kept under the data directory."""
        from connectors.opcua.connector import OpcUaConnector

        _quiet_asyncua()
        pki = _pki(context.data_dir)

        def build(device: DeviceBase, groups: Sequence[GroupBase]) -> Connector:
            assert isinstance(device, OpcUaDeviceConfig)
            return OpcUaConnector(device, groups_of_type(groups, OpcUaGroup, device.id), pki)

        return build

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from connectors.opcua.browse_args import add_browse_arguments

        add_browse_arguments(parser)

    def run_command(self, args: argparse.Namespace) -> int:
        from connectors.opcua.browse import run_browse

        _quiet_asyncua()
        return run_browse(args)

    async def discover(
        self,
        connection: BaseModel,
        start: str | None,
        depth: int,
        limit: int,
        context: PluginContext,
    ) -> list[DiscoveredTag]:
        """The server's variables below ``start`` (a node id; default Objects), with the
        devices' client certificate and trusted server certificates."""
        from connectors.opcua.browse import discover

        assert isinstance(connection, OpcUaEndpointConfig)
        _quiet_asyncua()
        return await discover(connection, _pki(context.data_dir), start, depth, limit)


@functools.cache
def _pki(data_dir: Path) -> ClientPki:
    """One per data directory, shared by the devices and discovery: its lock keeps them from
    generating the client certificate twice."""
    from connectors.opcua.security import ClientPki

    return ClientPki(data_dir / "opcua" / "pki")


def _quiet_asyncua() -> None:
    """asyncua logs every request at INFO and a traceback for every lost connection; the
    connector and ``browse`` say what went wrong in one line of their own."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)


PLUGIN = OpcUaPlugin()
