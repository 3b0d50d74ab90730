"""The OPC UA protocol plugin (entry point ``edge_gateway.connectors: opcua``): devices, and the
``gateway browse`` command that lists a server's variables."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from connectors.opcua.config import OpcUaDeviceConfig, OpcUaGroup, OpcUaProfile, check_groups
from gateway.devices import DeviceBase, GroupBase
from gateway.errors import ConfigProblem
from gateway.plugins import ConnectorFactory, PluginContext, groups_of_type
from gateway.protocols import Connector

__all__ = ["PLUGIN", "OpcUaPlugin"]


class OpcUaPlugin:
    type = "opcua"
    device_model = OpcUaDeviceConfig
    profile_model = OpcUaProfile
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
        from connectors.opcua.security import ClientPki

        _quiet_asyncua()
        pki = ClientPki(context.data_dir / "opcua" / "pki")

        def build(device: DeviceBase, groups: Sequence[GroupBase]) -> Connector:
            assert isinstance(device, OpcUaDeviceConfig)
            return OpcUaConnector(device, groups_of_type(groups, OpcUaGroup, device.id), pki)

        return build

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from connectors.opcua.browse import add_browse_arguments

        add_browse_arguments(parser)

    def run_command(self, args: argparse.Namespace) -> int:
        from connectors.opcua.browse import run_browse

        _quiet_asyncua()
        return run_browse(args)


def _quiet_asyncua() -> None:
    """asyncua logs every request at INFO and a traceback for every lost connection; the
    connector and ``browse`` say what went wrong in one line of their own."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)


PLUGIN = OpcUaPlugin()
