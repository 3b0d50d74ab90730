"""Fixtures shared by every test tier. Keep this file small: helpers live in tests/support."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start extra brokers (``users=``, ``extra_config=``); all are stopped by PID afterwards."""
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in brokers:
            broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A fresh anonymous broker on a free port for this test only."""
    return mosquitto_factory()
