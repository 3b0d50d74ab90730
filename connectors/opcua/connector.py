"""The OPC UA connector: subscription groups, polling groups and event subscriptions of one
server, as cycles.

Each ``start()`` opens a fresh session and recreates everything from the configuration:
namespace indexes (``nsu=``), browse paths, one subscription per subscription group with all
its monitored items (in calls of at most MaxMonitoredItemsPerCall), and the Read requests of
the polling groups (at most MaxNodesPerRead nodes each), and one subscription per ``events``
entry followed by a ConditionRefresh, so the alarms' state is known again after every reconnect.
No RegisterNodes: nothing piles up on the server across reconnects.

A lost session — the socket closed, the health check (a read every ``keepalive`` s) failed, a
subscription silent past its keep-alive, a Read that got no answer — makes ``cycles()`` raise
ConnectorError: the device goes offline, its supervisor backs off and calls ``start()`` again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import BadSessionClosed, BadSessionIdInvalid, UaError, UaStatusCodeError

from connectors.opcua.config import OpcUaDeviceConfig, OpcUaEventsConfig, OpcUaGroup, OpcUaTag
from connectors.opcua.events import (
    EventStream,
    event_filter,
    resolve_event_type,
    standard_node,
)
from connectors.opcua.fast_publish import readings_from_changes
from connectors.opcua.nodes import UnknownNamespace, chunks, parse_node_id
from connectors.opcua.publish_loop import FastResult, decode_fast
from connectors.opcua.security import ClientPki
from connectors.opcua.session import (
    close_client,
    describe_error,
    open_client,
    read_operation_limits,
)
from connectors.opcua.values import readings_from, status_name
from connectors.opcua.write import OpcUaWriter
from gateway.cycle import Cycle, Failure, FailureKind
from gateway.errors import ConnectorError
from gateway.protocols import TagWrite, WriteOutcome
from gateway.reading import Quality, Reading, bad_readings
from gateway.schedule import PollScheduler, phase_of

__all__ = ["OpcUaConnector"]

log = logging.getLogger(__name__)

_QUEUE_LIMIT = 10_000
"""Cycles waiting for the runtime; past it new notifications are dropped and counted."""
_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_ERRORS = (OSError, TimeoutError, UaError)
_BUSY_CODES = frozenset({StatusCodes.BadTooManyOperations, StatusCodes.BadServerTooBusy})
"""Answers that mean "try again shortly": retried within the cycle, the device degraded."""
_BUSY_DELAY = 0.02
_CONDITION_METHODS = {
    "acknowledge": (ObjectIds.AcknowledgeableConditionType_Acknowledge, "OPC UA Acknowledge"),
    "confirm": (ObjectIds.AcknowledgeableConditionType_Confirm, "OPC UA Confirm"),
}


@dataclass(slots=True)
class _Target:
    """One tag of a group and the node it was resolved to on this session."""

    tag: OpcUaTag
    node: ua.NodeId | None = None
    problem: str | None = None
    """Why the tag cannot be read on this session (unknown node, namespace, path...)."""


@dataclass(slots=True)
class _Group:
    config: OpcUaGroup
    targets: list[_Target]
    names: list[str] = field(default_factory=list)
    """Subscriptions: the tag name of each client handle (the index)."""
    reads: list[tuple[list[str], ua.ReadParameters]] = field(default_factory=list)
    """Polling: the Read requests of one cycle and the tag names they read, in order."""
    subscription_id: int | None = None
    stale_after: float = math.inf
    """Seconds without a publish response (data or keep-alive) after which it is lost."""
    last_response: float = 0.0

    @property
    def label(self) -> str:
        return f"group {self.config.name}"


@dataclass(slots=True)
class _EventSubscription:
    config: OpcUaEventsConfig
    index: int
    stream: EventStream
    subscription_id: int | None = None
    problem: str | None = None
    """Why it could not be subscribed on this session."""
    stale_after: float = math.inf
    last_response: float = 0.0

    @property
    def label(self) -> str:
        return f"events[{self.index}]"


class OpcUaConnector:
    """One OPC UA server endpoint, read through subscriptions and/or polling."""

    def __init__(
        self, device: OpcUaDeviceConfig, groups: Sequence[OpcUaGroup], pki: ClientPki
    ) -> None:
        self.device = device
        self._pki = pki
        self._configs = list(groups)
        self._client: Client | None = None
        self._groups: list[_Group] = []
        self._events: list[_EventSubscription] = []
        self._namespaces: list[str] = []
        self._queue: asyncio.Queue[Cycle] = asyncio.Queue(_QUEUE_LIMIT)
        self._dropped = 0
        """Notifications dropped because the queue was full, not yet reported."""
        self._lost: str | None = None
        self._unavailable: str | None = None
        self._writer = OpcUaWriter()
        if device.username is not None and device.security.policy == "None":
            log.warning(
                "%s: security policy None: the password may cross the network readable", device.id
            )

    async def start(self) -> bool:
        self._lost = None
        self._queue = asyncio.Queue(_QUEUE_LIMIT)
        self._groups = [_Group(g, [_Target(t) for t in g.tags]) for g in self._configs]
        self._events = [
            _EventSubscription(config, index, EventStream(self.device.id))
            for index, config in enumerate(self.device.events)
        ]
        self._writer.forget()
        client = await open_client(self.device, self._pki, self.device.id)
        self._client = client
        client.connection_lost_callback = self._connection_lost
        try:
            await self._setup(client)
        except _ERRORS as exc:
            raise ConnectorError(describe_error(exc, self.device)) from exc
        return True

    async def write(self, writes: Sequence[TagWrite], verify: bool) -> list[WriteOutcome]:
        """Set tag values (see connectors/opcua/write.py) on this session."""
        client = self._client
        if client is None:
            raise ConnectorError(f"device {self.device.id} is not connected")
        nodes: dict[str, ua.NodeId | str] = {
            target.tag.name: target.node or target.problem or "not resolved on this session"
            for group in self._groups
            for target in group.targets
        }
        return await self._writer.write(client, nodes, writes, verify)

    async def answer_condition(
        self, condition_id: str, event_id: str, action: str, comment: str
    ) -> WriteOutcome:
        """Acknowledge or confirm the occurrence ``event_id`` (hex EventId) of a condition."""
        if action not in _CONDITION_METHODS:
            raise ValueError(f"unknown action {action!r}: 'acknowledge' or 'confirm'")
        method_id, method = _CONDITION_METHODS[action]
        try:
            event = bytes.fromhex(event_id)
        except ValueError:
            raise ValueError(f"event id {event_id!r} is not hexadecimal") from None
        ref = parse_node_id(condition_id)  # its ValueError says what is wrong
        client = self._client
        if client is None:
            raise ConnectorError(f"device {self.device.id} is not connected")
        outcome = WriteOutcome(condition_id, written=False, method=method)
        try:
            request = ua.CallMethodRequest(
                ObjectId=ref.resolve(self._namespaces),
                MethodId=standard_node(method_id),
                InputArguments=[
                    ua.Variant(event, ua.VariantType.ByteString),
                    ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
                ],
            )
        except UnknownNamespace as exc:
            outcome.error = str(exc)
            return outcome
        try:
            [result] = await client.uaclient.call([request])
        except UaStatusCodeError as exc:
            outcome.error = status_name(exc.code)
            return outcome
        except _ERRORS as exc:
            outcome.applied = None
            outcome.error = f"{type(exc).__name__}: {exc}: it may have been applied; not retried"
            return outcome
        code = result.StatusCode.value
        if code >> 30:
            outcome.error = status_name(code)
        else:
            outcome.written = outcome.applied = True
        return outcome

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client, self.device.timeout)

    async def cycles(self) -> AsyncIterator[Cycle]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        subscribed: list[_Group | _EventSubscription] = [
            *(g for g in self._groups if g.subscription_id is not None),
            *(e for e in self._events if e.subscription_id is not None),
        ]
        for subscription in subscribed:
            subscription.last_response = now
        initial = self._initial_cycle()
        if initial is not None:
            yield self._report(initial)
        del initial  # a cycle is not held through the wait for the next (see gateway/cycle.py)
        queue = self._queue
        polling = [g for g in self._groups if g.config.mode == "polling"]
        schedule = PollScheduler(
            [g.config.interval for g in polling],
            [phase_of(f"{self.device.id}/{g.config.name}", g.config.interval) for g in polling],
            now,
        )
        health_every = self.device.keepalive
        while True:
            if self._lost is not None:
                raise ConnectorError(self._lost)
            now = loop.time()
            for subscription in subscribed:
                if now - subscription.last_response > subscription.stale_after:
                    raise ConnectorError(
                        f"{self.device.endpoint}: no publish response for"
                        f" {now - subscription.last_response:.1f} s ({subscription.label})"
                    )
            due = math.inf
            if polling:
                index, due = schedule.next()
                if due <= now:
                    cycle = await self._poll(polling[index])
                    finished = loop.time()
                    cycle.skipped = schedule.done(index, finished, answered=True)
                    yield self._report(cycle)
                    del cycle
                    continue
            if queue.empty():
                try:
                    async with asyncio.timeout(min(due, now + health_every) - loop.time()):
                        cycle = await queue.get()
                except TimeoutError:
                    continue
            else:
                cycle = queue.get_nowait()
            if cycle.readings or cycle.events or cycle.skipped:  # else a wake-up from _lose()
                yield self._report(cycle)
            del cycle

    # --- set-up on every connect ------------------------------------------------------------

    async def _setup(self, client: Client) -> None:
        namespaces = self._namespaces = await client.get_namespace_array()
        max_read, max_items = await read_operation_limits(client)
        max_read = self.device.max_nodes_per_read or max_read
        await self._resolve(client, namespaces, max_read)
        decode_fast(client.uaclient.session)
        for group in self._groups:
            if group.config.mode == "subscription":
                await self._subscribe(client, group, max_items)
            else:
                self._plan_reads(group, max_read)
        for subscription in self._events:
            await self._subscribe_events(client, subscription, namespaces)
        unavailable = [
            f"{t.tag.name}: {t.problem}" for g in self._groups for t in g.targets if t.problem
        ] + [f"{e.label}: {e.problem}" for e in self._events if e.problem]
        self._unavailable = None
        if unavailable:
            log.warning(
                "%s: %d tag(s) unavailable: %s",
                self.device.id,
                len(unavailable),
                "; ".join(unavailable[:5]),
            )
            self._unavailable = f"{len(unavailable)} tag(s) unavailable: " + "; ".join(
                unavailable[:3]
            )

    async def _resolve(self, client: Client, namespaces: list[str], max_read: int) -> None:
        """Node ids for every tag: ``nsu=`` against the namespace array, browse paths by one
        TranslateBrowsePathsToNodeIds call (per chunk)."""
        paths: list[tuple[_Target, ua.BrowsePath]] = []
        for group in self._groups:
            config = group.config
            for target in group.targets:
                tag = target.tag
                try:
                    ref = tag.node_ref
                    if ref is not None:
                        target.node = ref.resolve(namespaces)
                        continue
                    path = tag.browse_path
                    assert path is not None
                    start = parse_node_id(config.start_node).resolve(namespaces)
                    relative = path.relative_path(config.namespace, namespaces)
                except UnknownNamespace as exc:
                    target.problem = str(exc)
                    continue
                paths.append((target, ua.BrowsePath(StartingNode=start, RelativePath=relative)))
        for chunk in chunks(paths, max_read):
            results = await client.uaclient.translate_browsepaths_to_nodeids([p for _, p in chunk])
            for (target, _), result in zip(chunk, results, strict=True):
                code = result.StatusCode.value
                if code >> 30 or not result.Targets:
                    target.problem = f"{status_name(code)} (browse path {target.tag.path})"
                    continue
                found = result.Targets[0].TargetId
                target.node = ua.NodeId(found.Identifier, found.NamespaceIndex, found.NodeIdType)

    async def _create_subscription(
        self,
        client: Client,
        subscription: _Group | _EventSubscription,
        interval: float,
        handler: _PublishHandler | _EventHandler,
    ) -> None:
        """A subscription whose keep-alives let a silent one be noticed (``stale_after``)."""
        interval_ms = interval * 1000
        keepalive = max(1, math.ceil(self.device.keepalive / interval))
        lifetime = max(3 * keepalive, math.ceil(self.device.session_timeout / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=lifetime,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await client.uaclient.session.create_subscription(params, handler)
        subscription.subscription_id = result.SubscriptionId
        revised_s = (result.RevisedPublishingInterval or interval_ms) / 1000
        revised_keepalive = result.RevisedMaxKeepAliveCount or keepalive
        subscription.stale_after = revised_s * revised_keepalive * 2 + self.device.timeout

    async def _subscribe(self, client: Client, group: _Group, max_items: int) -> None:
        config = group.config
        interval_ms = config.interval * 1000
        session = client.uaclient.session
        group.names = [target.tag.name for target in group.targets]
        await self._create_subscription(client, group, config.interval, self._on_publish(group))
        sampling_ms = (
            interval_ms if config.sampling_interval is None else config.sampling_interval * 1000
        )
        data_filter = _data_change_filter(config)
        requests = [
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=target.node, AttributeId=AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=ua.MonitoringParameters(
                    ClientHandle=handle,
                    SamplingInterval=sampling_ms,
                    Filter=data_filter,
                    QueueSize=config.queue_size,
                    DiscardOldest=True,
                ),
            )
            for handle, target in enumerate(group.targets)
            if target.node is not None
        ]
        for chunk in chunks(requests, max_items):
            created = await session.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=group.subscription_id,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=list(chunk),
                )
            )
            for request, item in zip(chunk, created, strict=True):
                code = item.StatusCode.value
                if code >> 30:
                    target = group.targets[request.RequestedParameters.ClientHandle]
                    target.problem = f"{status_name(code)} ({target.tag.node or target.tag.path})"

    async def _subscribe_events(
        self, client: Client, subscription: _EventSubscription, namespaces: list[str]
    ) -> None:
        """One subscription with one event monitored item, then ConditionRefresh: the server
        re-sends every condition still of interest, between RefreshStart and RefreshEnd."""
        config = subscription.config
        try:
            notifier = parse_node_id(config.node).resolve(namespaces)
            types = [resolve_event_type(text, namespaces) for text in config.types]
        except UnknownNamespace as exc:
            subscription.problem = str(exc)
            return
        handler = _EventHandler(self, subscription, asyncio.get_running_loop())
        await self._create_subscription(client, subscription, config.interval, handler)
        [created] = await client.uaclient.session.create_monitored_items(
            ua.CreateMonitoredItemsParameters(
                SubscriptionId=subscription.subscription_id,
                TimestampsToReturn=ua.TimestampsToReturn.Neither,
                ItemsToCreate=[
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=ua.ReadValueId(
                            NodeId=notifier, AttributeId=AttributeIds.EventNotifier
                        ),
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=ua.MonitoringParameters(
                            ClientHandle=0,
                            SamplingInterval=0,
                            Filter=event_filter(types, config.min_severity),
                            QueueSize=config.queue_size,
                            DiscardOldest=True,
                        ),
                    )
                ],
            )
        )
        code = created.StatusCode.value
        if code >> 30:
            subscription.problem = f"{status_name(code)} (events of {config.node})"
            return
        if not config.refresh:
            return
        refresh = ua.CallMethodRequest(
            ObjectId=standard_node(ObjectIds.ConditionType),
            MethodId=standard_node(ObjectIds.ConditionType_ConditionRefresh),
            InputArguments=[ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)],
        )
        try:
            [result] = await client.uaclient.call([refresh])
            code = result.StatusCode.value
        except UaStatusCodeError as exc:  # a server without the Call service
            code = exc.code
        if code >> 30:
            # A server without conditions may not have the method: its events still come.
            log.warning(
                "%s: ConditionRefresh of %s refused (%s): alarms show from their next change",
                self.device.id,
                subscription.label,
                status_name(code),
            )

    def _plan_reads(self, group: _Group, max_read: int) -> None:
        readable = [t for t in group.targets if t.node is not None]
        group.reads = [
            (
                [t.tag.name for t in chunk],
                ua.ReadParameters(
                    MaxAge=0,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    NodesToRead=[
                        ua.ReadValueId(NodeId=t.node, AttributeId=AttributeIds.Value) for t in chunk
                    ],
                ),
            )
            for chunk in chunks(readable, max_read)
        ]

    def _initial_cycle(self) -> Cycle | None:
        """Bad readings, once per session, for the tags that could not be resolved or monitored."""
        now = time.time_ns()
        readings = [
            Reading(self.device.id, t.tag.name, None, Quality.BAD, now, now, t.problem)
            for g in self._groups
            for t in g.targets
            if t.problem is not None and g.config.mode == "subscription"
        ]
        if not readings:
            return None
        return Cycle(readings, now)

    # --- data ---------------------------------------------------------------------------------

    def _on_publish(self, group: _Group) -> _PublishHandler:
        return _PublishHandler(self, group, asyncio.get_running_loop())

    def _deliver(self, cycle: Cycle) -> None:
        try:
            self._queue.put_nowait(cycle)
        except asyncio.QueueFull:
            self._dropped += 1

    def _report(self, cycle: Cycle) -> Cycle:
        """Add what is true of the session rather than of one cycle."""
        cycle.standing = self._unavailable
        if self._dropped:
            cycle.skipped += self._dropped
            self._dropped = 0
        return cycle

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        # Wake cycles() at once: it yields no empty cycle, and sees _lost first.
        self._deliver(Cycle([], time.time_ns()))

    async def _connection_lost(self, exc: Exception) -> None:
        self._lose(f"{self.device.endpoint}: session lost ({describe_error(exc, self.device)})")

    async def _poll(self, group: _Group) -> Cycle:
        client = self._client
        if client is None:
            raise ConnectorError(f"device {self.device.id} is not started")
        cycle = Cycle([], time.time_ns())
        started = time.monotonic()
        readings = cycle.readings
        use_server = group.config.timestamps == "server"
        device = self.device.id
        for names, params in group.reads:
            cycle.requests += 1
            try:
                values = await self._read(client, params, cycle)
            except UaStatusCodeError as exc:
                if isinstance(exc, BadSessionIdInvalid | BadSessionClosed):
                    raise ConnectorError(describe_error(exc, self.device)) from exc
                reason = status_name(exc.code)
                kind = FailureKind.BUSY if exc.code in _BUSY_CODES else FailureKind.REFUSED
                cycle.failures.append(Failure(kind, f"Read of {len(names)} node(s): {reason}"))
                readings += bad_readings(device, names, reason, cycle.time_ns)
                continue
            except _ERRORS as exc:
                raise ConnectorError(describe_error(exc, self.device)) from exc
            batch_readings, _ = readings_from(device, names, values, use_server, time.time_ns())
            readings += batch_readings
        problems = [t for t in group.targets if t.problem is not None]
        for target in problems:
            assert target.problem is not None
            readings += bad_readings(device, (target.tag.name,), target.problem, cycle.time_ns)
        cycle.duration_s = time.monotonic() - started
        return cycle

    async def _read(self, client: Client, params: ua.ReadParameters, cycle: Cycle) -> list[Any]:
        """One Read, retried while the server answers it is too busy."""
        for attempt in range(self.device.busy_retries + 1):
            try:
                return await client.uaclient.read(params)
            except UaStatusCodeError as exc:
                if exc.code not in _BUSY_CODES or attempt == self.device.busy_retries:
                    raise
                cycle.retries += 1
                await asyncio.sleep(_BUSY_DELAY * (attempt + 1))
        raise AssertionError("unreachable")


class _PublishHandler:
    """Called by asyncua for every publish response of one subscription: one batch per
    data-change notification, no work per value beyond building its reading."""

    __slots__ = ("_connector", "_group", "_loop", "_names", "_use_server")

    def __init__(
        self, connector: OpcUaConnector, group: _Group, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._connector = connector
        self._group = group
        self._loop = loop
        self._names = group.names
        self._use_server = group.config.timestamps == "server"

    def __call__(self, result: ua.PublishResult | FastResult) -> None:
        connector = self._connector
        self._group.last_response = self._loop.time()
        received_ns = time.time_ns()
        device = connector.device.id
        names = self._names
        if isinstance(result, FastResult):  # data changes only (fast_publish.py)
            for changes in result.publish.changes:
                readings, _ = readings_from_changes(
                    device, names, changes, self._use_server, received_ns
                )
                connector._deliver(Cycle(readings, received_ns, requests=1))
            return
        notifications = result.NotificationMessage.NotificationData
        if not notifications:
            return  # a keep-alive
        for notification in notifications:
            if isinstance(notification, ua.DataChangeNotification):
                items = notification.MonitoredItems
                readings, _ = readings_from(
                    device,
                    [names[item.ClientHandle] for item in items],
                    [item.Value for item in items],
                    self._use_server,
                    received_ns,
                )
                connector._deliver(Cycle(readings, received_ns, requests=1))
            elif isinstance(notification, ua.StatusChangeNotification):
                _status_changed(connector, self._group.label, notification)


class _EventHandler:
    """Called by asyncua for every publish response of one event subscription: one cycle per
    EventNotificationList. asyncua decodes those (the fast path takes data changes only: here
    it decodes keep-alives alone)."""

    __slots__ = ("_connector", "_loop", "_subscription")

    def __init__(
        self,
        connector: OpcUaConnector,
        subscription: _EventSubscription,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._connector = connector
        self._subscription = subscription
        self._loop = loop

    def __call__(self, result: ua.PublishResult | FastResult) -> None:
        subscription = self._subscription
        subscription.last_response = self._loop.time()
        if isinstance(result, FastResult):
            return  # a keep-alive: this subscription has no data changes
        received_ns = time.time_ns()
        for notification in result.NotificationMessage.NotificationData or ():
            if isinstance(notification, ua.EventNotificationList):
                events, overflows = subscription.stream.take(notification.Events, received_ns)
                if events or overflows:
                    cycle = Cycle([], received_ns, requests=1, skipped=overflows, events=events)
                    self._connector._deliver(cycle)
            elif isinstance(notification, ua.StatusChangeNotification):
                _status_changed(self._connector, subscription.label, notification)


def _status_changed(
    connector: OpcUaConnector, label: str, notification: ua.StatusChangeNotification
) -> None:
    code = notification.Status.value
    if code >> 30:
        connector._lose(
            f"{connector.device.endpoint}: subscription of {label} ended ({status_name(code)})"
        )


def _data_change_filter(config: OpcUaGroup) -> ua.DataChangeFilter | None:
    spec = config.filter
    if spec is None:
        return None
    if spec.absolute is not None:
        deadband, value = ua.DeadbandType.Absolute, spec.absolute
    elif spec.percent is not None:
        deadband, value = ua.DeadbandType.Percent, spec.percent
    else:
        deadband, value = ua.DeadbandType.None_, 0.0
    return ua.DataChangeFilter(
        Trigger=_TRIGGERS[spec.trigger], DeadbandType=deadband, DeadbandValue=value
    )
