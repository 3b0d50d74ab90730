"""Events and alarms end to end: the simulator process's Boiler1 alarm and batch events through a
real OpcUaConnector (subscribe, acknowledge, confirm, ConditionRefresh after a restart)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from connectors.opcua.config import OpcUaDeviceConfig
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import ClientPki
from gateway.cycle import Cycle
from gateway.errors import ConnectorError
from gateway.events import Event
from gateway.protocols import HandlesConditions
from simulators.opcua.alarms import ACTIVE_SEVERITY, BATCH_SEVERITY, NORMAL_SEVERITY
from tests.support.opcua import OpcUaSimulator

pytestmark = pytest.mark.integration

PERIOD = 0.05
"""Seconds per tick: a new batch every 100 ticks (5 s)."""
ALARM_PERIOD = 4.0
"""Active 0-4 s after start (time to acknowledge), normal 4-8 s (the batch ends at 5 s)..."""
WAIT = 15.0


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[OpcUaSimulator]:
    simulator = OpcUaSimulator(
        tmp_path / "sim", "--period", str(PERIOD), "--alarm-period", str(ALARM_PERIOD)
    )
    try:
        yield simulator.start()
    finally:
        simulator.stop()


def connector_for(sim: OpcUaSimulator, tmp_path: Path) -> OpcUaConnector:
    device = OpcUaDeviceConfig.model_validate(
        {
            "id": "boiler",
            "type": "opcua",
            "endpoint": sim.endpoint,
            "profile": "p",
            "timeout": 2,
            "keepalive": 1,
            "events": [{"interval": 0.1}],
        }
    )
    return OpcUaConnector(device, [], ClientPki(tmp_path / "pki"))


class Events:
    """The connector's events in order, one at a time (a cycle may carry several)."""

    def __init__(self, cycles: AsyncIterator[Cycle]) -> None:
        self.cycles = cycles
        self.pending: deque[Event] = deque()

    async def next(self, wanted: Callable[[Event], bool]) -> Event:
        """The next event that ``wanted`` accepts, skipping the others."""
        async with asyncio.timeout(WAIT):
            while True:
                while self.pending:
                    event = self.pending.popleft()
                    if wanted(event):
                        return event
                cycle = await anext(self.cycles)
                assert not cycle.readings
                self.pending.extend(cycle.events)


def alarm(active: bool, **more: object) -> Callable[[Event], bool]:
    return lambda e: (
        e.condition == "TemperatureHigh"
        and e.active is active
        and all(getattr(e, key) == value for key, value in more.items())
    )


async def test_alarm_acknowledge_confirm_batches_and_refresh_after_a_restart(
    sim: OpcUaSimulator, tmp_path: Path
) -> None:
    connector = connector_for(sim, tmp_path)
    assert await connector.start()
    try:
        events = Events(connector.cycles())
        raised = await events.next(alarm(True, acked=False))
        assert raised.event_type == "ExclusiveLevelAlarmType"
        assert raised.severity == ACTIVE_SEVERITY
        assert raised.message == "Temperature high: 92.5 °C (limit 90.0 °C)"
        assert raised.source == "Boiler1.Temperature"
        assert raised.condition_id is not None
        assert raised.condition_id.endswith(";s=Boiler1.TemperatureHigh")
        assert (raised.confirmed, raised.retain) == (False, True)
        assert len(bytes.fromhex(raised.event_id)) > 0
        assert raised.time_ns <= raised.received_ns

        condition = raised.condition_id
        wrong = await connector.answer_condition(condition, "00ff", "acknowledge", "no")
        assert (wrong.written, wrong.applied, wrong.error) == (False, False, "BadEventIdUnknown")

        acked = await connector.answer_condition(condition, raised.event_id, "acknowledge", "seen")
        assert (acked.tag, acked.written, acked.applied, acked.error) == (
            condition,
            True,
            True,
            None,
        )
        assert acked.method == "OPC UA Acknowledge"
        after = await events.next(alarm(True, acked=True))
        assert after.event_id != raised.event_id and after.confirmed is False

        again = await connector.answer_condition(condition, after.event_id, "acknowledge", "")
        assert (again.written, again.error) == (False, "BadConditionBranchAlreadyAcked")

        confirmed = await connector.answer_condition(condition, after.event_id, "confirm", "ok")
        assert (confirmed.written, confirmed.method) == (True, "OPC UA Confirm")
        await events.next(alarm(True, acked=True, confirmed=True))

        normal = await events.next(alarm(False))
        assert normal.severity == NORMAL_SEVERITY
        assert normal.message == "Temperature back to normal: 75.0 °C"
        assert normal.retain is False  # inactive, acknowledged and confirmed

        batch = await events.next(lambda e: e.message == "Batch B000000 ended")
        assert batch.event_type.endswith(";s=BatchEventType")
        assert (batch.source, batch.severity) == ("Line1", BATCH_SEVERITY)
        assert batch.condition_id is None and batch.as_dict().keys().isdisjoint({"active"})
        started = await events.next(lambda e: e.event_type == batch.event_type)
        assert started.message == "Batch B000001 started"

        # The server restarts while the alarm is active (it is active from the start).
        await events.next(alarm(True, acked=False, refresh=False))
        sim.stop()
        sim.start()
        with pytest.raises(ConnectorError):
            async with asyncio.timeout(WAIT):
                async for _ in events.cycles:
                    pass
        # What the device supervisor does; the server listens again (READY) before this.
        await connector.stop()
        assert await connector.start()
        events = Events(connector.cycles())
        refreshed = await events.next(alarm(True))
        assert refreshed.refresh and refreshed.as_dict()["refresh"] is True
        assert (refreshed.acked, refreshed.retain, refreshed.severity) == (False, True, 700)
        # Events after the refresh are new occurrences again.
        later = await events.next(lambda e: e.condition == "TemperatureHigh")
        assert later.refresh is False
    finally:
        await connector.stop()


async def test_answering_needs_a_connection_and_a_known_action(
    sim: OpcUaSimulator, tmp_path: Path
) -> None:
    connector = connector_for(sim, tmp_path)
    assert isinstance(connector, HandlesConditions)
    with pytest.raises(ConnectorError, match="not connected"):
        await connector.answer_condition("ns=2;s=Boiler1.TemperatureHigh", "00", "acknowledge", "")
    with pytest.raises(ValueError, match="unknown action 'silence'"):
        await connector.answer_condition("ns=2;s=X", "00", "silence", "")
    with pytest.raises(ValueError, match="not hexadecimal"):
        await connector.answer_condition("ns=2;s=X", "xyz", "confirm", "")
