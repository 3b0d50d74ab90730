"""A live subscription on the real simulator is decoded by the fast path, not by asyncua."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import connectors.opcua.publish_loop as publish_loop
from connectors.opcua.config import OpcUaDeviceConfig, OpcUaGroup
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.fast_publish import FastPublish, decode_publish
from connectors.opcua.security import ClientPki
from gateway.reading import Quality
from simulators.opcua.plant import BULK_FOLDER, NAMESPACE
from tests.support.opcua import OpcUaSimulator

NODES = 40


@pytest.fixture
def changing_sim(tmp_path: Path) -> Iterator[OpcUaSimulator]:
    sim = OpcUaSimulator(tmp_path / "sim", "--nodes", str(NODES), "--period", "0.2")
    try:
        yield sim.start()
    finally:
        sim.stop()


async def test_data_changes_come_through_the_fast_decoder(
    changing_sim: OpcUaSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[FastPublish | None] = []

    def counting(data: bytes | memoryview) -> FastPublish | None:
        decoded.append(decode_publish(data))
        return decoded[-1]

    monkeypatch.setattr(publish_loop, "decode_publish", counting)
    device = OpcUaDeviceConfig.model_validate(
        {"id": "fast", "type": "opcua", "endpoint": changing_sim.endpoint, "profile": "p"}
    )
    group = OpcUaGroup.model_validate(
        {
            "name": "bulk",
            "interval": 0.2,
            "tags": [
                {"name": f"v{i}", "node": f"nsu={NAMESPACE};s={BULK_FOLDER}.V{i:05d}"}
                for i in range(NODES)
            ],
        }
    )
    connector = OpcUaConnector(device, [group], ClientPki(tmp_path / "pki"))
    assert await connector.start()
    try:
        seen: dict[str, list[float]] = {}
        cycles = connector.cycles()
        async with asyncio.timeout(20):
            while len(seen) < NODES or min(len(v) for v in seen.values()) < 3:
                cycle = await anext(cycles)
                for reading in cycle.readings:
                    assert reading.quality is Quality.GOOD, reading
                    assert isinstance(reading.value, float)
                    seen.setdefault(reading.tag, []).append(reading.value)
    finally:
        await connector.stop()
    assert set(seen) == {f"v{i}" for i in range(NODES)}
    # The simulator's bulk value is tick + index: every tag moves on by one per change.
    for index in range(NODES):
        values = seen[f"v{index}"]
        assert all(b > a for a, b in itertools.pairwise(values)), values
    data = [result for result in decoded if result is None or result.notifications]
    assert data, "no publish response with data"
    assert None not in data, "asyncua decoded data changes the fast path should have"
