"""Fixtures of the integration tier: simulator and gateway processes, stopped by PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.simulator import ModbusSimulator


@pytest.fixture
def launch_sim(tmp_path: Path) -> Iterator[Callable[..., ModbusSimulator]]:
    """Start Modbus simulator processes (``port=`` to come back on a known one)."""
    started: list[ModbusSimulator] = []

    def launch(*args: str, port: int | None = None) -> ModbusSimulator:
        sim = ModbusSimulator(tmp_path / f"sim{len(started)}", *args, port=port, name="sim")
        started.append(sim)
        return sim.start()

    yield launch
    for sim in started:
        sim.stop()


@pytest.fixture
def run_gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], GatewayProcess]]:
    """Start ``gateway run`` processes with the given configuration documents."""
    started: list[GatewayProcess] = []

    def run(cfg: dict[str, Any]) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path / f"gateway{len(started)}", cfg)
        started.append(gateway)
        return gateway.start()

    yield run
    for gateway in started:
        gateway.stop()
