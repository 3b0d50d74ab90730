"""Explicit registration: a device's ``type`` picks its connector (Telegraf's registry idea)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from connectors.modbus.config import ModbusDeviceConfig, ModbusGroup
from connectors.modbus.connector import ModbusConnector
from connectors.modbus.link import LinkPool
from connectors.opcua.config import OpcUaDeviceConfig, OpcUaGroup
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import ClientPki
from gateway.protocols import Connector
from gateway.status import DeviceStatus

__all__ = ["ConnectorFactory", "build_connector_factory"]

ConnectorFactory = Callable[
    [ModbusDeviceConfig | OpcUaDeviceConfig, Sequence[ModbusGroup | OpcUaGroup], DeviceStatus],
    Connector,
]
G = TypeVar("G", ModbusGroup, OpcUaGroup)


def build_connector_factory(data_dir: Path = Path("./data")) -> ConnectorFactory:
    """A factory sharing one Modbus link per endpoint among all devices it builds, and one
    OPC UA client certificate (kept under ``data_dir``) among all OPC UA devices."""
    links = LinkPool()
    pki = ClientPki(data_dir / "opcua" / "pki")

    def build(
        device: ModbusDeviceConfig | OpcUaDeviceConfig,
        groups: Sequence[ModbusGroup | OpcUaGroup],
        status: DeviceStatus,
    ) -> Connector:
        if isinstance(device, ModbusDeviceConfig):
            return ModbusConnector(device, _of_type(groups, ModbusGroup, device.id), status, links)
        return OpcUaConnector(device, _of_type(groups, OpcUaGroup, device.id), status, pki)

    return build


def _of_type(groups: Sequence[ModbusGroup | OpcUaGroup], kind: type[G], device: str) -> list[G]:
    """The groups, checked to be of the device's protocol (config validation ensures it)."""
    typed = [group for group in groups if isinstance(group, kind)]
    if len(typed) != len(groups):
        raise TypeError(f"device {device}: groups of another protocol than {kind.__name__}")
    return typed
