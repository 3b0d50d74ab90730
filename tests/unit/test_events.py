"""Events from connector to sinks: kept in the outbox, written as line protocol and MQTT, kept
per device for the API, and alarms answered through the write policy and audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.audit import Audit
from gateway.events import Event
from gateway.local_store import EVENTS_KEPT, LocalStore
from gateway.outbox import decode_batch, encode_batch
from gateway.protocols import WriteOutcome
from gateway.reading import Batch, good_readings
from gateway.sinks.line_protocol import LineEncoder
from gateway.sinks.mqtt_payload import encode_event, events_topic
from gateway.status import DeviceState
from gateway.writeback import Target, WriteRefused, WritesConfig, WriteService

ALARM = Event(
    "boiler", "0a0b", "ExclusiveLevelAlarmType", "Boiler1.Temperature",
    'Temperature "high"', 700, 1_700_000_000_000_000_000, 1_700_000_000_100_000_000,
    "ns=2;s=Boiler1.TemperatureHigh", "TemperatureHigh", True, False, None, True,
)  # fmt: skip
BATCH_START = Event(
    "boiler", "0c0d", "BatchEventType", "Line1", "Batch B1 started", 100, 0, 1_700_000_000_0
)


def test_a_batch_of_events_survives_the_outbox_and_old_records_still_read() -> None:
    batch = Batch("boiler", [], 5, {"site": "p1"}, "m", [ALARM, BATCH_START])
    assert decode_batch(encode_batch(batch)) == batch
    readings = Batch("plc", good_readings("plc", ["a"], [1], 7, 8), 7)
    assert decode_batch(encode_batch(readings)) == readings
    before_events = orjson.dumps(["plc", 7, {}, None, 8, ["a"], [1], []])
    assert decode_batch(before_events) == readings


def test_events_are_points_of_their_own_measurement() -> None:
    encoder = LineEncoder("gw", "telemetry", "ms", unsigned=True)
    encoded = encoder.encode([Batch("boiler", [], 0, {"site": "p1"}, None, [ALARM, BATCH_START])])
    assert encoded.points == 2
    alarm, batch = encoded.body.decode().split("\n")
    assert alarm == (
        "events,device=boiler,gateway=gw,site=p1,source=Boiler1.Temperature"
        ",type=ExclusiveLevelAlarmType,condition=TemperatureHigh"
        ' message="Temperature \\"high\\"",severity=700i,event_id="0a0b"'
        ',condition_id="ns=2;s=Boiler1.TemperatureHigh",active=true,acked=false,retain=true'
        " 1700000000000"
    )
    # No server time: stamped with its arrival. No condition: no condition fields.
    assert batch == (
        "events,device=boiler,gateway=gw,site=p1,source=Line1,type=BatchEventType"
        ' message="Batch B1 started",severity=100i,event_id="0c0d" 17000'
    )
    both = encoder.encode([Batch("plc", good_readings("plc", ["t"], [1.5], 10**9, 0), 10**9)])
    assert both.body == b"telemetry,device=plc,gateway=gw t=1.5 1000"


def test_an_event_is_one_json_message_on_the_devices_events_topic() -> None:
    assert events_topic("plant", "gw1", "boiler") == "plant/gw1/boiler/events"
    body = orjson.loads(encode_event(ALARM))
    assert body["condition"] == "TemperatureHigh"
    assert body["severity"] == 700 and body["active"] is True and body["acked"] is False
    assert "refresh" not in body
    plain = orjson.loads(encode_event(BATCH_START))
    assert "condition_id" not in plain and "active" not in plain


async def test_the_store_keeps_each_devices_latest_events_newest_first() -> None:
    store = LocalStore(None)
    events = [
        Event("boiler", f"{i:04x}", "T", "s", f"event {i}", 1, i, i) for i in range(EVENTS_KEPT + 5)
    ]
    await store.write([Batch("boiler", [], 0, events=events[:3])])
    await store.write([Batch("boiler", [], 0, events=events[3:])])
    kept = list(store.events["boiler"])
    assert len(kept) == EVENTS_KEPT
    assert kept[0] is events[-1]
    assert store.event("boiler", events[-1].event_id) is events[-1]
    assert store.event("boiler", events[0].event_id) is None  # dropped: the oldest
    assert store.current("boiler") == {}  # no readings came with them
    store.forget("boiler")
    assert store.event("boiler", events[-1].event_id) is None


class _Alarms:
    def __init__(self, outcome: WriteOutcome | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, str, str]] = []

    async def answer_condition(
        self, condition_id: str, event_id: str, action: str, comment: str
    ) -> WriteOutcome:
        self.calls.append((condition_id, event_id, action, comment))
        if self.outcome is None:
            await asyncio.Event().wait()  # never answers
        assert self.outcome is not None
        return self.outcome


def target(connector: object, state: DeviceState = DeviceState.ONLINE) -> Target:
    return Target("boiler", {}, state, connector)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[WriteService]:
    audit = Audit(tmp_path / "audit.db", 100)
    yield WriteService(WritesConfig(enabled=True, per_minute=3, timeout=0.05), audit)
    audit.close()


async def test_an_acknowledgement_goes_to_the_device_and_into_the_audit(
    service: WriteService,
) -> None:
    done = WriteOutcome(ALARM.condition_id or "", True, applied=True, method="OPC UA Acknowledge")
    alarms = _Alarms(done)
    outcome = await service.answer_condition(
        target(alarms), "boiler", ALARM, "acknowledge", "seen", who="token:ops", path="rest"
    )
    assert outcome.written
    assert alarms.calls == [("ns=2;s=Boiler1.TemperatureHigh", "0a0b", "acknowledge", "seen")]
    [(_, entry)] = await service.audit.entries(10, None, "boiler")
    assert (entry.tag, entry.result, entry.method, entry.raw) == (
        "ns=2;s=Boiler1.TemperatureHigh", "written", "OPC UA Acknowledge", "0a0b",
    )  # fmt: skip
    assert entry.requested == {"action": "acknowledge", "event_id": "0a0b", "comment": "seen"}


@pytest.mark.parametrize(
    ("event", "connector", "state", "may_write", "status", "reason"),
    [
        (ALARM, _Alarms(), DeviceState.ONLINE, False, 403, "may only read"),
        (BATCH_START, _Alarms(), DeviceState.ONLINE, True, 422, "not of a condition"),
        (ALARM, object(), DeviceState.ONLINE, True, 422, "no alarms to answer"),
        (ALARM, _Alarms(), DeviceState.OFFLINE, True, 409, "is offline"),
    ],
)
async def test_refusals_name_why_and_are_audited(
    service: WriteService,
    event: Event,
    connector: object,
    state: DeviceState,
    may_write: bool,
    status: int,
    reason: str,
) -> None:
    with pytest.raises(WriteRefused) as refused:
        await service.answer_condition(
            target(connector, state), "boiler", event, "confirm", "", "token:x", "page", may_write
        )
    assert refused.value.status == status
    assert reason in refused.value.reason
    [(_, entry)] = await service.audit.entries(10, None, "boiler")
    assert entry.result == "refused" and reason in (entry.reason or "")


async def test_no_answer_in_time_is_unknown_not_retried(service: WriteService) -> None:
    alarms = _Alarms(None)
    outcome = await service.answer_condition(
        target(alarms), "boiler", ALARM, "acknowledge", "", "token:x", "rest"
    )
    assert outcome.applied is None and "may have been applied" in (outcome.error or "")
    assert len(alarms.calls) == 1
    [(_, entry)] = await service.audit.entries(10, None, "boiler")
    assert entry.result == "unknown"
