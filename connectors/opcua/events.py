"""OPC UA events → :class:`gateway.events.Event`: the EventFilter of an event subscription and
the reading of the EventFieldLists it delivers.

The select clauses are fixed, one per field of ``Event``; the fields of conditions (alarms) are
null for plain events. The where clause keeps the configured types (OfType, which servers apply
to subtypes too) at or above the minimum severity, and always lets through what the client needs
whatever the filter: the RefreshStart/RefreshEnd events around a ConditionRefresh and the
EventQueueOverflow events that say events were lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

from connectors.opcua.nodes import parse_node_id
from connectors.opcua.values import datetime_ns
from gateway.events import Event

__all__ = [
    "FIELDS",
    "EventStream",
    "event_filter",
    "event_type_name",
    "resolve_event_type",
    "standard_node",
]

log = logging.getLogger(__name__)


def standard_node(identifier: int) -> ua.NodeId:
    """A node of the standard namespace 0, by its ``ObjectIds`` number."""
    return ua.NodeId(ua.Int32(identifier))


_BASE = ObjectIds.BaseEventType
_CONDITION = ObjectIds.ConditionType
_ACKABLE = ObjectIds.AcknowledgeableConditionType
_ALARM = ObjectIds.AlarmConditionType
_REFRESH_START = standard_node(ObjectIds.RefreshStartEventType)
_REFRESH_END = standard_node(ObjectIds.RefreshEndEventType)
_OVERFLOW = standard_node(ObjectIds.EventQueueOverflowEventType)

_SELECT: tuple[tuple[str, int, str], ...] = (
    # (field, the type that defines it, browse path below the event; "" is the ConditionId)
    ("EventId", _BASE, "EventId"),
    ("EventType", _BASE, "EventType"),
    ("SourceName", _BASE, "SourceName"),
    ("Time", _BASE, "Time"),
    ("Message", _BASE, "Message"),
    ("Severity", _BASE, "Severity"),
    ("ConditionId", _CONDITION, ""),
    ("ConditionName", _CONDITION, "ConditionName"),
    ("ActiveState/Id", _ALARM, "ActiveState/Id"),
    ("AckedState/Id", _ACKABLE, "AckedState/Id"),
    ("ConfirmedState/Id", _ACKABLE, "ConfirmedState/Id"),
    ("Retain", _CONDITION, "Retain"),
)
FIELDS = tuple(name for name, _, _ in _SELECT)
"""The select clauses' fields, in order: what each EventFieldList holds."""
_INDEX = {name: index for index, name in enumerate(FIELDS)}
_REQUIRED = frozenset({"EventId", "EventType", "Time", "Severity"})
"""Every event has them (BaseEventType): a null one is worth a log line."""


def _operand(type_id: int, path: str) -> ua.SimpleAttributeOperand:
    if not path:  # the condition's own node: its NodeId attribute, no browse path
        return ua.SimpleAttributeOperand(
            TypeDefinitionId=standard_node(type_id), BrowsePath=[], AttributeId=AttributeIds.NodeId
        )
    return ua.SimpleAttributeOperand(
        TypeDefinitionId=standard_node(type_id),
        BrowsePath=[ua.QualifiedName(name, 0) for name in path.split("/")],
        AttributeId=AttributeIds.Value,
    )


_Tree = tuple[ua.FilterOperator, tuple[Any, ...]]
"""An operator and its operands: literals, attribute operands or further trees."""


def _of_type(type_id: ua.NodeId) -> _Tree:
    return (ua.FilterOperator.OfType, (ua.LiteralOperand(ua.Variant(type_id)),))


def _any(trees: Sequence[_Tree]) -> _Tree:
    """OR of the trees (the operator takes two operands: a chain)."""
    head, *rest = trees
    return head if not rest else (ua.FilterOperator.Or, (head, _any(rest)))


def _flatten(root: _Tree) -> list[ua.ContentFilterElement]:
    """The elements of a where clause, the root first as the standard asks."""
    elements: list[ua.ContentFilterElement] = []

    def visit(tree: _Tree) -> ua.ElementOperand:
        index = len(elements)
        element = ua.ContentFilterElement(FilterOperator=tree[0])
        elements.append(element)
        element.FilterOperands = [
            visit(operand) if isinstance(operand, tuple) else operand for operand in tree[1]
        ]
        return ua.ElementOperand(Index=index)

    visit(root)
    return elements


def event_filter(types: Sequence[ua.NodeId], min_severity: int) -> ua.EventFilter:
    """Select every field of ``FIELDS``; keep events of ``types`` (all if empty) whose Severity
    is at least ``min_severity``, and always the refresh and overflow events."""
    wanted: list[_Tree] = []
    if types:
        wanted.append(_any([_of_type(type_id) for type_id in types]))
    if min_severity > 0:
        severity = _operand(_BASE, "Severity")
        limit = ua.LiteralOperand(ua.Variant(min_severity, ua.VariantType.UInt16))
        wanted.append((ua.FilterOperator.GreaterThanOrEqual, (severity, limit)))
    where = ua.ContentFilter()
    if wanted:
        keep = wanted[0] if len(wanted) == 1 else (ua.FilterOperator.And, tuple(wanted))
        always = [_of_type(t) for t in (_REFRESH_START, _REFRESH_END, _OVERFLOW)]
        where.Elements = _flatten(_any([keep, *always]))
    return ua.EventFilter(
        SelectClauses=[_operand(type_id, path) for _, type_id, path in _SELECT],
        WhereClause=where,
    )


def resolve_event_type(text: str, namespaces: Sequence[str]) -> ua.NodeId:
    """A configured type: a standard type's name (``AlarmConditionType``) or a node id (which
    may raise UnknownNamespace)."""
    standard = getattr(ObjectIds, text, None)
    if isinstance(standard, int):
        return standard_node(standard)
    return parse_node_id(text).resolve(namespaces)


def event_type_name(type_id: ua.NodeId) -> str:
    """The browse name of a standard type, else the node id (``ns=3;s=BatchEventType``)."""
    if type_id.NamespaceIndex == 0 and isinstance(type_id.Identifier, int):
        name = ObjectIdNames.get(type_id.Identifier)
        if name is not None:
            return name
    return type_id.to_string()


class EventStream:
    """The events of one event subscription of one session, in order: it knows whether a
    ConditionRefresh is being answered (between RefreshStart and RefreshEnd)."""

    __slots__ = ("_device", "_refreshing", "_warned")

    def __init__(self, device: str) -> None:
        self._device = device
        self._refreshing = False
        self._warned: set[str] = set()
        """What was already logged of missing or malformed fields: once per session, not per
        event (a few lines at most: fields x types)."""

    def take(self, lists: Sequence[ua.EventFieldList], received_ns: int) -> tuple[list[Event], int]:
        """The events of one EventNotificationList, and how many overflow events said the
        server's queue dropped some."""
        events: list[Event] = []
        overflows = 0
        for item in lists:
            fields = item.EventFields or []
            if len(fields) != len(FIELDS):
                self._warn(f"events with {len(fields)} field(s), not {len(FIELDS)}")
            event_type = self._get(fields, "EventType", ua.NodeId)
            if event_type == _REFRESH_START:
                self._refreshing = True
            elif event_type == _REFRESH_END:
                self._refreshing = False
            elif event_type == _OVERFLOW:
                overflows += 1
            else:
                events.append(self._event(fields, event_type, received_ns))
        return events, overflows

    def _event(
        self, fields: list[ua.Variant], event_type: ua.NodeId | None, received_ns: int
    ) -> Event:
        get = self._get
        event_id = get(fields, "EventId", bytes)
        time = get(fields, "Time", datetime)
        message = get(fields, "Message", ua.LocalizedText)
        severity = get(fields, "Severity", int)
        condition = get(fields, "ConditionId", ua.NodeId)
        is_condition = condition is not None and not condition.is_null()
        return Event(
            device=self._device,
            event_id="" if event_id is None else event_id.hex(),
            event_type="" if event_type is None else event_type_name(event_type),
            source=get(fields, "SourceName", str) or "",
            message=(message.Text or "") if message is not None else "",
            severity=1 if severity is None else severity,
            time_ns=received_ns if time is None else datetime_ns(time),
            received_ns=received_ns,
            condition_id=condition.to_string() if is_condition else None,
            condition=get(fields, "ConditionName", str) if is_condition else None,
            active=get(fields, "ActiveState/Id", bool) if is_condition else None,
            acked=get(fields, "AckedState/Id", bool) if is_condition else None,
            confirmed=get(fields, "ConfirmedState/Id", bool) if is_condition else None,
            retain=get(fields, "Retain", bool) if is_condition else None,
            refresh=self._refreshing,
        )

    def _get(self, fields: list[ua.Variant], name: str, kind: type) -> Any:
        """The field's value if it has the expected type, else None (logged once)."""
        index = _INDEX[name]
        value = fields[index].Value if index < len(fields) else None
        if value is None:
            if name in _REQUIRED:
                self._warn(f"event field {name} is missing: default used")
            return None
        # bool is an int to Python, not to OPC UA
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self._warn(f"event field {name} is {type(value).__name__}, not {kind.__name__}: ignored")
        return None

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s: %s", self._device, message)
