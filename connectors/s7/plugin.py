"""The Siemens S7 protocol plugin (entry point ``edge_gateway.connectors: s7``)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.s7.config import S7DeviceConfig, S7Group, S7Profile
from gateway.devices import DeviceBase, GroupBase
from gateway.errors import ConfigProblem
from gateway.plugins import ConnectorFactory, PluginContext, groups_of_type
from gateway.protocols import Connector

__all__ = ["PLUGIN", "S7Plugin"]


class S7Plugin:
    type = "s7"
    device_model = S7DeviceConfig
    profile_model = S7Profile
    registration_fields = ("host", "port", "rack", "slot")

    def check_groups(
        self, groups: Sequence[GroupBase], where: str, device: DeviceBase | None, context: str
    ) -> list[ConfigProblem]:
        """Addresses and types are checked tag by tag by the schema; nothing spans tags."""
        return []

    def connector_factory(self, context: PluginContext) -> ConnectorFactory:
        from connectors.s7.connector import S7Connector

        def build(device: DeviceBase, groups: Sequence[GroupBase]) -> Connector:
            assert isinstance(device, S7DeviceConfig)
            return S7Connector(device, groups_of_type(groups, S7Group, device.id))

        return build


PLUGIN = S7Plugin()
