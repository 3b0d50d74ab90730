"""The OPC UA connector: subscription groups and polling groups of one server, as batches.

Each ``start()`` opens a fresh session and recreates everything from the configuration:
namespace indexes (``nsu=``), browse paths, one subscription per subscription group with all
its monitored items (in calls of at most MaxMonitoredItemsPerCall), and the Read requests of
the polling groups (at most MaxNodesPerRead nodes each). No RegisterNodes: nothing piles up on
the server across reconnects.

A lost session — the socket closed, the health check (a read every ``keepalive`` s) failed, a
subscription silent past its keep-alive, a Read that got no answer — makes ``batches()`` raise
ConnectorError: the device goes offline, its supervisor backs off and calls ``start()`` again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import BadSessionClosed, BadSessionIdInvalid, UaError, UaStatusCodeError

from connectors.opcua.config import OpcUaDeviceConfig, OpcUaGroup, OpcUaTag
from connectors.opcua.nodes import UnknownNamespace, chunks, parse_node_id
from connectors.opcua.security import ClientPki
from connectors.opcua.session import (
    close_client,
    describe_error,
    open_client,
    read_operation_limits,
)
from connectors.opcua.values import readings_from, status_name
from gateway.errors import ConnectorError
from gateway.reading import Batch, Quality, Reading
from gateway.status import DeviceState, DeviceStatus

__all__ = ["OpcUaConnector"]

log = logging.getLogger(__name__)

_QUEUE_LIMIT = 10_000
"""Batches waiting for the runtime; past it new notifications are dropped and counted."""
_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_ERRORS = (OSError, TimeoutError, UaError)


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
    next_poll: float = 0.0
    failure: str | None = None
    """Polling: why a Read of the last cycle failed, if one did."""


class OpcUaConnector:
    """One OPC UA server endpoint, read through subscriptions and/or polling."""

    def __init__(
        self,
        device: OpcUaDeviceConfig,
        groups: Sequence[OpcUaGroup],
        status: DeviceStatus,
        pki: ClientPki,
    ) -> None:
        self.device = device
        self.status = status
        self._pki = pki
        self._configs = list(groups)
        self._client: Client | None = None
        self._groups: list[_Group] = []
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(_QUEUE_LIMIT)
        self._lost: str | None = None
        self._unavailable: list[str] = []
        if device.username is not None and device.security.policy == "None":
            log.warning(
                "%s: security policy None: the password may cross the network readable", device.id
            )

    async def start(self) -> None:
        self._lost = None
        self._queue = asyncio.Queue(_QUEUE_LIMIT)
        self._groups = [_Group(g, [_Target(t) for t in g.tags]) for g in self._configs]
        client = await open_client(self.device, self._pki, self.device.id)
        self._client = client
        client.connection_lost_callback = self._connection_lost
        try:
            await self._setup(client)
        except _ERRORS as exc:
            raise ConnectorError(describe_error(exc, self.device)) from exc
        self.status.connects += 1

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client, self.device.timeout)

    async def batches(self) -> AsyncIterator[Batch]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for group in self._groups:
            group.last_response = now
            group.next_poll = now
        initial = self._initial_batch()
        if initial is not None:
            yield self._account(initial)
        queue = self._queue
        polling = [g for g in self._groups if g.config.mode == "polling"]
        subscribed = [g for g in self._groups if g.subscription_id is not None]
        health_every = self.device.keepalive
        while True:
            if self._lost is not None:
                raise ConnectorError(self._lost)
            now = loop.time()
            for group in subscribed:
                if now - group.last_response > group.stale_after:
                    raise ConnectorError(
                        f"{self.device.endpoint}: no publish response for"
                        f" {now - group.last_response:.1f} s (group {group.config.name})"
                    )
            for group in polling:
                if group.next_poll <= now:
                    yield self._account(await self._poll(group))
                    self._schedule(group, loop.time())
            if queue.empty():
                due = min((g.next_poll for g in polling), default=math.inf)
                try:
                    async with asyncio.timeout(min(due, now + health_every) - loop.time()):
                        batch = await queue.get()
                except TimeoutError:
                    continue
            else:
                batch = queue.get_nowait()
            if batch.readings:  # empty: a wake-up from _lose(), or a notification of nothing
                yield self._account(batch)

    # --- set-up on every connect ------------------------------------------------------------

    async def _setup(self, client: Client) -> None:
        namespaces = await client.get_namespace_array()
        max_read, max_items = await read_operation_limits(client)
        max_read = self.device.max_nodes_per_read or max_read
        await self._resolve(client, namespaces, max_read)
        for group in self._groups:
            if group.config.mode == "subscription":
                await self._subscribe(client, group, max_items)
            else:
                self._plan_reads(group, max_read)
        self._unavailable = [
            f"{t.tag.name}: {t.problem}" for g in self._groups for t in g.targets if t.problem
        ]
        if self._unavailable:
            log.warning(
                "%s: %d tag(s) unavailable: %s",
                self.device.id,
                len(self._unavailable),
                "; ".join(self._unavailable[:5]),
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

    async def _subscribe(self, client: Client, group: _Group, max_items: int) -> None:
        config = group.config
        interval_ms = config.interval * 1000
        session = client.uaclient.session
        keepalive = max(1, math.ceil(self.device.keepalive / config.interval))
        lifetime = max(3 * keepalive, math.ceil(self.device.session_timeout / config.interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=lifetime,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        group.names = [target.tag.name for target in group.targets]
        result = await session.create_subscription(params, self._on_publish(group))
        group.subscription_id = result.SubscriptionId
        revised_s = (result.RevisedPublishingInterval or interval_ms) / 1000
        revised_keepalive = result.RevisedMaxKeepAliveCount or keepalive
        group.stale_after = revised_s * revised_keepalive * 2 + self.device.timeout
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

    def _initial_batch(self) -> Batch | None:
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
        return Batch(self.device.id, readings, now, self.device.labels)

    # --- data ---------------------------------------------------------------------------------

    def _on_publish(self, group: _Group) -> _PublishHandler:
        return _PublishHandler(self, group, asyncio.get_running_loop())

    def _deliver(self, batch: Batch) -> None:
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.status.skipped_cycles += 1

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        # Wake batches() at once: it yields no empty batch, and sees _lost first.
        self._deliver(Batch(self.device.id, [], time.time_ns(), self.device.labels))

    async def _connection_lost(self, exc: Exception) -> None:
        self._lose(f"{self.device.endpoint}: session lost ({describe_error(exc, self.device)})")

    async def _poll(self, group: _Group) -> Batch:
        client = self._client
        if client is None:
            raise ConnectorError(f"device {self.device.id} is not started")
        cycle_ns = time.time_ns()
        started = time.monotonic()
        readings: list[Reading] = []
        use_server = group.config.timestamps == "server"
        device = self.device.id
        group.failure = None
        requests = errors = 0
        for names, params in group.reads:
            try:
                values = await client.uaclient.read(params)
            except UaStatusCodeError as exc:
                if isinstance(exc, BadSessionIdInvalid | BadSessionClosed):
                    raise ConnectorError(describe_error(exc, self.device)) from exc
                reason = status_name(exc.code)
                group.failure = f"Read of {len(names)} node(s) refused: {reason}"
                requests += 1
                errors += 1
                received_ns = time.time_ns()
                readings += [
                    Reading(device, n, None, Quality.BAD, cycle_ns, received_ns, reason)
                    for n in names
                ]
                continue
            except _ERRORS as exc:
                raise ConnectorError(describe_error(exc, self.device)) from exc
            requests += 1
            batch_readings, _ = readings_from(device, names, values, use_server, time.time_ns())
            readings += batch_readings
        received_ns = time.time_ns()
        readings += [
            Reading(device, t.tag.name, None, Quality.BAD, cycle_ns, received_ns, t.problem)
            for t in group.targets
            if t.problem is not None
        ]
        self.status.requests += requests  # with polls, in one step: see _account
        self.status.request_errors += errors
        self.status.last_poll_duration_s = time.monotonic() - started
        return Batch(device, readings, cycle_ns, self.device.labels)

    def _schedule(self, group: _Group, finished: float) -> None:
        """Next poll one interval later; cycles that could not start on time are skipped."""
        interval = group.config.interval
        group.next_poll += interval
        if group.next_poll < finished:
            missed = int((finished - group.next_poll) // interval) + 1
            group.next_poll += missed * interval
            self.status.overruns += 1
            self.status.skipped_cycles += missed

    def _account(self, batch: Batch) -> Batch:
        status = self.status
        status.polls += 1
        good = 0
        for reading in batch.readings:
            if reading.quality is Quality.GOOD:
                good += 1
        status.values += good
        if good:
            status.last_good_read_ns = batch.cycle_ns
        failures = [g.failure for g in self._groups if g.failure is not None]
        if failures:
            status.state = DeviceState.DEGRADED
            status.last_error = failures[0]
        elif self._unavailable:
            status.state = DeviceState.DEGRADED
            status.last_error = f"{len(self._unavailable)} tag(s) unavailable: " + "; ".join(
                self._unavailable[:3]
            )
        else:
            status.state = DeviceState.ONLINE
            status.last_error = None
        return batch


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

    def __call__(self, result: ua.PublishResult) -> None:
        connector = self._connector
        self._group.last_response = self._loop.time()
        connector.status.requests += 1
        notifications = result.NotificationMessage.NotificationData
        if not notifications:
            return  # a keep-alive
        received_ns = time.time_ns()
        device = connector.device.id
        names = self._names
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
                connector._deliver(Batch(device, readings, received_ns, connector.device.labels))
            elif isinstance(notification, ua.StatusChangeNotification):
                code = notification.Status.value
                if code >> 30:
                    connector._lose(
                        f"{connector.device.endpoint}: subscription of group"
                        f" {self._group.config.name} ended ({status_name(code)})"
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
