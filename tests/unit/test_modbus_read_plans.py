"""Devices of one profile share their planned reads (spans, decoders): memory per device."""

from __future__ import annotations

import gc

from connectors.modbus.config import (
    MAX_READ_REGISTERS,
    ModbusDeviceConfig,
    ModbusGroup,
    ModbusTag,
)
from connectors.modbus.connector import ModbusConnector, ReadPlans
from connectors.modbus.link import LinkPool

GROUP = ModbusGroup(
    name="all",
    interval=1.0,
    tags=[ModbusTag(name=f"r{i}", address=i * 3) for i in range(300)],
)


def _device(device_id: str, max_registers_per_read: int = MAX_READ_REGISTERS) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(
        id=device_id,
        type="modbus",
        host="127.0.0.1",
        profile="p",
        max_registers_per_read=max_registers_per_read,
    )


def _reads(connector: ModbusConnector) -> tuple[object, ...]:
    return tuple(connector._plans[0].reads)


def test_devices_with_the_same_group_and_limits_share_one_plan() -> None:
    plans, links = ReadPlans(), LinkPool()
    first = ModbusConnector(_device("a"), [GROUP], links, plans)
    second = ModbusConnector(_device("b"), [GROUP], links, plans)
    assert len(_reads(first)) > 1
    assert all(x is y for x, y in zip(_reads(first), _reads(second), strict=True))


def test_other_limits_or_another_group_get_their_own_plan() -> None:
    plans, links = ReadPlans(), LinkPool()
    base = ModbusConnector(_device("a"), [GROUP], links, plans)
    smaller = ModbusConnector(_device("b", max_registers_per_read=50), [GROUP], links, plans)
    copy = GROUP.model_copy(deep=True)
    other = ModbusConnector(_device("c"), [copy], links, plans)
    assert len(_reads(smaller)) > len(_reads(base))
    assert not set(map(id, _reads(base))) & set(map(id, _reads(other)))


def test_a_plan_is_released_with_its_last_device() -> None:
    plans, links = ReadPlans(), LinkPool()
    connector = ModbusConnector(_device("a"), [GROUP], links, plans)
    assert len(plans._shared) == 1
    del connector
    gc.collect()
    assert len(plans._shared) == 0
