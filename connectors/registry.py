"""Explicit registration: a device's ``type`` picks its connector (Telegraf's registry idea)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connectors.modbus.config import ModbusDeviceConfig, ModbusGroup
from connectors.modbus.connector import ModbusConnector
from connectors.modbus.link import LinkPool
from gateway.protocols import Connector
from gateway.status import DeviceStatus

__all__ = ["ConnectorFactory", "build_connector_factory"]

ConnectorFactory = Callable[[ModbusDeviceConfig, Sequence[ModbusGroup], DeviceStatus], Connector]


def build_connector_factory() -> ConnectorFactory:
    """A factory sharing one Modbus link per endpoint among all devices it builds."""
    links = LinkPool()

    def build(
        device: ModbusDeviceConfig, groups: Sequence[ModbusGroup], status: DeviceStatus
    ) -> Connector:
        return ModbusConnector(device, groups, status, links)

    return build
