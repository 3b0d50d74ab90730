"""OPC UA events: the EventFilter, EventFieldLists → Events, the events config, and event
notifications getting past the fast publish decoder to the connector's queue."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.server.monitored_item_service import WhereClauseEvaluator
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import struct_to_binary

from connectors.opcua.config import OpcUaDeviceConfig, OpcUaEventsConfig
from connectors.opcua.connector import OpcUaConnector, _EventHandler, _EventSubscription
from connectors.opcua.events import (
    FIELDS,
    EventStream,
    event_filter,
    event_type_name,
    resolve_event_type,
    standard_node,
)
from connectors.opcua.publish_loop import FastResult, decode_fast
from connectors.opcua.security import ClientPki
from gateway.config import parse_config
from gateway.errors import ConfigError

ALARM = standard_node(ObjectIds.AlarmConditionType)
LEVEL = standard_node(ObjectIds.ExclusiveLevelAlarmType)
BATCH = ua.NodeId(ua.String("BatchEventType"), ua.Int16(2))
CONDITION = ua.NodeId(ua.String("Boiler1.TemperatureHigh"), ua.Int16(2))
TIME = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
TIME_NS = 1_767_225_601_000_000_000
RECEIVED = 1_767_225_602_000_000_000


# --- the filter --------------------------------------------------------------------------------


def test_the_select_clauses_name_every_field_with_its_defining_type() -> None:
    clauses = event_filter([], 0).SelectClauses
    assert len(clauses) == len(FIELDS)
    paths = ["/".join(q.Name for q in c.BrowsePath) for c in clauses]
    assert paths == [*FIELDS[:6], "", *FIELDS[7:]]
    condition_id = clauses[FIELDS.index("ConditionId")]
    assert condition_id.TypeDefinitionId == standard_node(ObjectIds.ConditionType)
    assert (condition_id.BrowsePath, condition_id.AttributeId) == ([], AttributeIds.NodeId)
    by_path = {p: c for p, c in zip(paths, clauses, strict=True)}
    assert by_path["Severity"].TypeDefinitionId == standard_node(ObjectIds.BaseEventType)
    assert by_path["AckedState/Id"].TypeDefinitionId == standard_node(
        ObjectIds.AcknowledgeableConditionType
    )
    assert by_path["ActiveState/Id"].TypeDefinitionId == ALARM
    assert all(c.AttributeId == AttributeIds.Value for p, c in by_path.items() if p)
    assert all(q.NamespaceIndex == 0 for c in clauses for q in c.BrowsePath)


def test_no_types_and_no_severity_need_no_where_clause() -> None:
    assert event_filter([], 0).WhereClause.Elements == []


def kept(where: ua.ContentFilter, event_type: ua.NodeId, severity: int) -> bool:
    """What a server does with the where clause (asyncua's evaluator: OfType exact types)."""
    event = SimpleNamespace(EventType=event_type, Severity=severity)
    evaluator = WhereClauseEvaluator(logging.getLogger("test"), None, where)  # type: ignore[arg-type]
    return evaluator.eval(event)


REFRESH_START = standard_node(ObjectIds.RefreshStartEventType)
REFRESH_END = standard_node(ObjectIds.RefreshEndEventType)
OVERFLOW = standard_node(ObjectIds.EventQueueOverflowEventType)
BASE = standard_node(ObjectIds.BaseEventType)

# (types, min_severity, event type, severity, kept)
WHERE = [
    ([ALARM, BATCH], 500, ALARM, 700, True),
    ([ALARM, BATCH], 500, BATCH, 500, True),
    ([ALARM, BATCH], 500, ALARM, 499, False),
    ([ALARM, BATCH], 500, BASE, 900, False),
    ([ALARM, BATCH], 500, REFRESH_START, 1, True),
    ([ALARM, BATCH], 500, REFRESH_END, 1, True),
    ([ALARM, BATCH], 500, OVERFLOW, 1, True),
    ([ALARM], 0, ALARM, 1, True),
    ([ALARM], 0, BATCH, 1000, False),
    ([], 300, BATCH, 300, True),
    ([], 300, BATCH, 299, False),
    ([], 300, REFRESH_END, 1, True),
]


@pytest.mark.parametrize(("types", "severity", "event_type", "event_severity", "keep"), WHERE)
def test_the_where_clause_keeps_types_above_the_severity_and_always_refresh_and_overflow(
    types: list[ua.NodeId], severity: int, event_type: ua.NodeId, event_severity: int, keep: bool
) -> None:
    where = event_filter(types, severity).WhereClause
    assert kept(where, event_type, event_severity) is keep


def test_the_where_clause_is_a_tree_rooted_at_element_zero() -> None:
    elements = event_filter([ALARM, BATCH], 500).WhereClause.Elements
    operators = [e.FilterOperator for e in elements]
    assert operators[0] == ua.FilterOperator.Or
    assert operators.count(ua.FilterOperator.OfType) == 5  # 2 types, refresh start/end, overflow
    assert operators.count(ua.FilterOperator.GreaterThanOrEqual) == 1
    assert operators.count(ua.FilterOperator.And) == 1
    for index, element in enumerate(elements):
        for operand in element.FilterOperands:
            if isinstance(operand, ua.ElementOperand):
                assert operand.Index > index  # no cycles: every child after its parent
    literal = next(
        e.FilterOperands[1]
        for e in elements
        if e.FilterOperator == ua.FilterOperator.GreaterThanOrEqual
    )
    assert literal.Value == ua.Variant(500, ua.VariantType.UInt16)


def test_types_by_name_or_node_id_and_names_of_types() -> None:
    namespaces = ["http://opcfoundation.org/UA/", "urn:x", "urn:plant"]
    assert resolve_event_type("AlarmConditionType", namespaces) == ALARM
    assert resolve_event_type("i=2915", namespaces) == ALARM
    assert resolve_event_type("nsu=urn:plant;s=BatchEventType", namespaces) == ua.NodeId(
        ua.String("BatchEventType"), ua.Int16(2)
    )
    assert event_type_name(LEVEL) == "ExclusiveLevelAlarmType"
    assert event_type_name(BATCH) == "ns=2;s=BatchEventType"
    assert event_type_name(standard_node(999_999)) == "i=999999"


# --- EventFieldLists → Events ------------------------------------------------------------------


def fields(**values: Any) -> ua.EventFieldList:
    """An EventFieldList in the order of FIELDS; fields not given are null."""
    return ua.EventFieldList(
        ClientHandle=0, EventFields=[ua.Variant(values.get(name)) for name in FIELDS]
    )


def condition_fields(**more: Any) -> ua.EventFieldList:
    values: dict[str, Any] = {
        "EventId": b"\x01\xab",
        "EventType": LEVEL,
        "SourceName": "Boiler1.Temperature",
        "Time": TIME,
        "Message": ua.LocalizedText("Temperature high: 92.5 °C"),
        "Severity": ua.Variant(700, ua.VariantType.UInt16).Value,
        "ConditionId": CONDITION,
        "ConditionName": "TemperatureHigh",
        "ActiveState/Id": True,
        "AckedState/Id": False,
        "ConfirmedState/Id": False,
        "Retain": True,
    }
    return fields(**(values | more))


def test_a_condition_event_has_every_field() -> None:
    [event], overflows = EventStream("boiler").take([condition_fields()], RECEIVED)
    assert overflows == 0
    assert event.as_dict() == {
        "device": "boiler",
        "event_id": "01ab",
        "type": "ExclusiveLevelAlarmType",
        "source": "Boiler1.Temperature",
        "message": "Temperature high: 92.5 °C",
        "severity": 700,
        "time_ns": TIME_NS,
        "received_ns": RECEIVED,
        "condition_id": "ns=2;s=Boiler1.TemperatureHigh",
        "condition": "TemperatureHigh",
        "active": True,
        "acked": False,
        "confirmed": False,
        "retain": True,
    }


def test_a_plain_event_has_no_condition_fields() -> None:
    plain = fields(
        EventId=b"\xff",
        EventType=BATCH,
        SourceName="Line1",
        Time=TIME,
        Message=ua.LocalizedText("Batch B000001 started"),
        Severity=100,
    )
    [event], _ = EventStream("line").take([plain], RECEIVED)
    assert (event.event_type, event.message, event.severity) == (
        "ns=2;s=BatchEventType",
        "Batch B000001 started",
        100,
    )
    assert (event.condition_id, event.condition, event.active, event.retain) == (None,) * 4
    assert "condition_id" not in event.as_dict() and "refresh" not in event.as_dict()


def test_missing_and_malformed_fields_get_defaults_and_one_log_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = EventStream("odd")
    short = ua.EventFieldList(ClientHandle=0, EventFields=[ua.Variant(b"\x02")])
    odd = condition_fields(Severity=True, Time="yesterday", ConditionName=5, Message=None)
    with caplog.at_level(logging.WARNING, logger="connectors.opcua.events"):
        events, _ = stream.take([short, odd, odd], RECEIVED)
    first, second, _ = events
    assert (first.event_id, first.event_type, first.source, first.message) == ("02", "", "", "")
    assert (first.severity, first.time_ns, first.condition_id) == (1, RECEIVED, None)
    assert (second.severity, second.time_ns, second.condition) == (1, RECEIVED, None)
    assert second.active is True and second.message == ""
    messages = [r.getMessage() for r in caplog.records]
    assert "odd: events with 1 field(s), not 12" in messages
    assert "odd: event field Severity is bool, not int: ignored" in messages
    assert "odd: event field Time is str, not datetime: ignored" in messages
    assert "odd: event field EventType is missing: default used" in messages
    assert len(messages) == len(set(messages))  # once each, not per event


def test_events_between_refresh_start_and_end_are_marked_and_the_markers_dropped() -> None:
    stream = EventStream("boiler")
    start, end = fields(EventType=REFRESH_START), fields(EventType=REFRESH_END)
    events, _ = stream.take([start, condition_fields(EventId=b"\x01")], RECEIVED)
    more, _ = stream.take([condition_fields(EventId=b"\x02"), end], RECEIVED)
    after, _ = stream.take([condition_fields(EventId=b"\x03")], RECEIVED)
    assert [(e.event_id, e.refresh) for e in events + more + after] == [
        ("01", True),
        ("02", True),
        ("03", False),
    ]


def test_overflow_events_are_counted_not_delivered() -> None:
    overflow = fields(EventType=OVERFLOW, Severity=1)
    events, overflows = EventStream("d").take([overflow, condition_fields(), overflow], RECEIVED)
    assert (len(events), overflows) == (1, 2)


# --- config ------------------------------------------------------------------------------------


def config(events: list[Any]) -> dict[str, Any]:
    device = {
        "id": "boiler",
        "type": "opcua",
        "endpoint": "opc.tcp://127.0.0.1:4840",
        "groups": [{"name": "g", "tags": [{"name": "t", "node": "i=2258"}]}],
        "events": events,
    }
    return {"gateway": {"id": "gw"}, "devices": [device]}


def test_the_events_config_and_its_defaults() -> None:
    parsed = parse_config(config([{}, {"types": ["AlarmConditionType", "ns=2;s=Batch"]}]))
    device = parsed.devices[0]
    assert isinstance(device, OpcUaDeviceConfig)
    default, typed = device.events
    assert (default.node, default.types, default.min_severity) == ("i=2253", [], 0)
    assert (default.interval, default.queue_size, default.refresh) == (1.0, 1000, True)
    assert typed.types == ["AlarmConditionType", "ns=2;s=Batch"]


E = "devices[0].events[0]"
# (events entry, expected path, a word of the message)
EVENT_MISTAKES = [
    ({"node": "Server"}, f"{E}.node", "expected a node id"),
    ({"types": ["AlarmType2"]}, f"{E}.types[0]", "neither a node id nor the name"),
    ({"types": ["BaseEventType", "ns=2;i=x"]}, f"{E}.types[1]", "numeric identifier"),
    ({"types": ["Server"]}, f"{E}.types[0]", "standard OPC UA type"),
    ({"min_severity": 1001}, f"{E}.min_severity", "less than or equal"),
    ({"min_severity": -1}, f"{E}.min_severity", "greater than or equal"),
    ({"interval": 0}, f"{E}.interval", "greater than or equal"),
    ({"queue_size": 0}, f"{E}.queue_size", "greater than or equal"),
    ({"refresh": "sometimes"}, f"{E}.refresh", "boolean"),
    ({"severity": 5}, f"{E}.severity", "Extra inputs"),
]


@pytest.mark.parametrize(
    ("entry", "path", "word"), EVENT_MISTAKES, ids=[m[1] for m in EVENT_MISTAKES]
)
def test_event_config_mistakes_name_their_field(
    entry: dict[str, Any], path: str, word: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config([entry]))
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert any(p == path and word in m for p, m in problems), problems


# --- past the fast decoder ---------------------------------------------------------------------


def publish_response(*notifications: Any) -> bytes:
    response = ua.PublishResponse()
    response.Parameters.SubscriptionId = 7
    response.Parameters.NotificationMessage.SequenceNumber = 3
    response.Parameters.NotificationMessage.NotificationData = list(notifications)
    return struct_to_binary(response)


class Session:
    """What ``decode_fast`` patches: a session whose server gives the ``answers`` in turn."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    async def _send_request(self, request: Any, **_: Any) -> Buffer:
        return Buffer(self.answers.pop(0))


async def test_event_notifications_fall_back_to_asyncua_and_reach_the_queue(
    tmp_path: Path,
) -> None:
    device = OpcUaDeviceConfig.model_validate(
        {"id": "boiler", "type": "opcua", "endpoint": "opc.tcp://h:4840", "profile": "p"}
    )
    connector = OpcUaConnector(device, [], ClientPki(tmp_path))
    subscription = _EventSubscription(OpcUaEventsConfig(), 0, EventStream("boiler"))
    handler = _EventHandler(connector, subscription, asyncio.get_running_loop())
    session = Session()
    decode_fast(session)  # type: ignore[arg-type]
    session.answers = [
        publish_response(ua.EventNotificationList(Events=[condition_fields()])),
        publish_response(),  # a keep-alive
        publish_response(ua.EventNotificationList(Events=[fields(EventType=OVERFLOW)])),
    ]

    events = await session.publish([])  # type: ignore[attr-defined]
    assert isinstance(events, ua.PublishResponse)  # not data changes: asyncua decoded it
    handler(events.Parameters)
    cycle = connector._queue.get_nowait()
    assert (cycle.readings, cycle.requests, cycle.skipped) == ([], 1, 0)
    [event] = cycle.events
    assert (event.device, event.event_id, event.condition) == ("boiler", "01ab", "TemperatureHigh")

    keepalive = await session.publish([])  # type: ignore[attr-defined]
    assert isinstance(keepalive, FastResult)  # the fast path decodes any keep-alive
    subscription.last_response = 0.0
    handler(keepalive)
    assert subscription.last_response > 0 and connector._queue.empty()

    overflowed = await session.publish([])  # type: ignore[attr-defined]
    handler(overflowed.Parameters)
    lost = connector._queue.get_nowait()
    assert (lost.events, lost.skipped) == ([], 1)
