"""The Modbus protocol plugin (entry point ``edge_gateway.connectors: modbus``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from connectors.modbus.config import (
    MAX_READ_BITS,
    ModbusDeviceConfig,
    ModbusGroup,
    ModbusProfile,
    ModbusTag,
)
from gateway.devices import DeviceBase, GroupBase
from gateway.errors import ConfigProblem
from gateway.plugins import ConnectorFactory, PluginContext, groups_of_type
from gateway.protocols import Connector

__all__ = ["PLUGIN", "ModbusPlugin"]


class ModbusPlugin:
    type = "modbus"
    device_model = ModbusDeviceConfig
    profile_model = ModbusProfile
    registration_fields = ("host", "port", "unit")

    def check_groups(
        self, groups: Sequence[GroupBase], where: str, device: DeviceBase | None, context: str
    ) -> list[ConfigProblem]:
        """Every tag must fit the device's address range and one read of it."""
        if not isinstance(device, ModbusDeviceConfig):
            return []
        problems = []
        for g, group in enumerate(groups):
            for t, tag in enumerate(group.tags):
                assert isinstance(tag, ModbusTag)
                problems += _check_tag_fits(tag, f"{where}.groups[{g}].tags[{t}]", device, context)
        return problems

    def connector_factory(self, context: PluginContext) -> ConnectorFactory:
        """Devices on one endpoint (unit ids behind a gateway, an RS-485 line) share a link."""
        from connectors.modbus.connector import ModbusConnector, ReadPlans
        from connectors.modbus.link import LinkPool

        # pymodbus logs every timeout and reconnect; the runtime reports state changes once.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        links = LinkPool()
        plans = ReadPlans()

        def build(device: DeviceBase, groups: Sequence[GroupBase]) -> Connector:
            assert isinstance(device, ModbusDeviceConfig)
            own_groups = groups_of_type(groups, ModbusGroup, device.id)
            return ModbusConnector(device, own_groups, links, plans)

        return build


def _check_tag_fits(
    tag: ModbusTag, path: str, device: ModbusDeviceConfig, context: str
) -> list[ConfigProblem]:
    problems = []
    if tag.address < device.address_base:
        problems.append(
            ConfigProblem(
                f"{path}.address", f"below the device's address_base {device.address_base}{context}"
            )
        )
    end = tag.address - device.address_base + tag.size
    if end > 65536:
        problems.append(
            ConfigProblem(f"{path}.address", f"runs past the last address 65535{context}")
        )
    limit = (
        min(device.max_bits_per_read, MAX_READ_BITS)
        if tag.table.is_bits
        else device.max_registers_per_read
    )
    if tag.size > limit:
        problems.append(
            ConfigProblem(
                f"{path}.length",
                f"{tag.size} registers do not fit in one read"
                f" (max_registers_per_read {limit}){context}",
            )
        )
    return problems


PLUGIN = ModbusPlugin()
