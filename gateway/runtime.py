"""The runtime: device supervisors in, report-by-exception, and one buffer per sink out.

It owns buffering and retries for every sink, publishes availability, and stops in order:
devices first, then a bounded flush of what is buffered, then offline states, then the sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence

from connectors.registry import ConnectorFactory, build_connector_factory
from gateway.backoff import Backoff
from gateway.buffer import SinkBuffer
from gateway.config import DeviceConfig, GatewayConfig
from gateway.errors import SinkError
from gateway.normalize import ReportFilter
from gateway.outbox import Outbox
from gateway.protocols import Sink, StatusPublisher
from gateway.reading import Batch
from gateway.registry import DATABASE_FILE
from gateway.status import DeviceState, DeviceStatus
from gateway.supervisor import DeviceSupervisor

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class _Device:
    def __init__(
        self, config: DeviceConfig, task: asyncio.Task[None], status: DeviceStatus
    ) -> None:
        self.config = config
        self.task = task
        self.status = status


def _connection(device: DeviceConfig) -> dict[str, object]:
    """The settings that decide how a device is reached (not what is read from it)."""
    return device.model_dump(
        exclude={"id", "enabled", "labels", "profile", "groups", "measurement"}
    )


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        sinks: Sequence[Sink],
        connector_factory: ConnectorFactory | None = None,
    ) -> None:
        self.config = config
        self.sinks = list(sinks)
        durable = [s.name for s in self.sinks if getattr(s, "durable", True)]
        self.outbox: Outbox | None = None
        if config.runtime.outbox.enabled and durable:
            path = config.gateway.data_dir / DATABASE_FILE
            self.outbox = Outbox(path, durable, config.runtime.outbox)
        self.buffers = [
            SinkBuffer(sink, config.runtime, self.outbox if sink.name in durable else None)
            for sink in self.sinks
        ]
        self.devices: dict[str, _Device] = {}
        self._factory = connector_factory or build_connector_factory()
        self._publishers = [s for s in self.sinks if isinstance(s, StatusPublisher)]
        self._dirty: set[str] = set()
        self._status_wakeup = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        for sink in self.sinks:
            await sink.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                workers = [
                    tasks.create_task(buffer.run(), name=f"sink:{buffer.sink.name}")
                    for buffer in self.buffers
                ]
                workers += [
                    tasks.create_task(self._publish_statuses(p), name="status")
                    for p in self._publishers
                ]
                if self.outbox is not None:
                    workers.append(tasks.create_task(self._keep_outbox(), name="outbox"))
                for device in self.config.devices:
                    if device.enabled:
                        self.add_device(device)
                self.started.set()
                await stop.wait()
                await self._shutdown(workers)
        finally:
            self._tasks = None
            for sink in self.sinks:
                await sink.stop()
            if self.outbox is not None:
                self.outbox.close()

    def add_device(self, device: DeviceConfig, status: DeviceStatus | None = None) -> None:
        """Start polling a device (``status`` carries its counters over from a replaced one)."""
        if self._tasks is None:
            raise RuntimeError("the runtime is not running")
        if device.id in self.devices:
            raise ValueError(f"device {device.id!r} is already running")
        status = status or DeviceStatus(device.id)
        groups = self.config.groups_of(device)
        connector = self._factory(device, groups, status)
        report = ReportFilter(tag for group in groups for tag in group.tags)
        runtime_config = self.config.runtime

        labels = device.labels
        measurement = self.config.measurement_of(device)

        def on_batch(batch: Batch) -> None:
            batch.labels = labels
            batch.measurement = measurement
            report.apply(batch)
            if not batch.readings:
                return  # report by exception left nothing to report
            row_id = self.outbox.append(batch) if self.outbox is not None else 0
            for buffer in self.buffers:
                buffer.put(batch, row_id)

        supervisor = DeviceSupervisor(
            connector,
            status,
            Backoff(runtime_config.reconnect_min, runtime_config.reconnect_max),
            on_batch,
            self._status_changed,
        )
        task = self._tasks.create_task(supervisor.run(), name=f"device:{device.id}")
        self.devices[device.id] = _Device(device, task, status)

    async def remove_device(self, device_id: str, *, forget: bool = False) -> None:
        """Stop a device and publish it offline; ``forget`` then clears its retained status."""
        device = self.devices.pop(device_id)
        await self._cancel(device)
        device.status.state = DeviceState.OFFLINE
        device.status.last_error = "removed" if forget else "disabled"
        for publisher in self._publishers:
            try:
                await publisher.publish_device_status(device.status)
                if forget:
                    await publisher.clear_device_status(device_id)
            except SinkError as exc:
                log.warning("device %s: status not published on removal: %s", device_id, exc)

    async def replace_device(self, device: DeviceConfig) -> None:
        """Apply a changed device live: only its own connector restarts. When its connection
        settings are unchanged, the new connector starts before the old one stops, so a link
        shared by a pool (Modbus) stays open and nothing reconnects."""
        old = self.devices.pop(device.id)
        same_link = _connection(old.config) == _connection(device)
        if not same_link:
            await self._cancel(old)
        self.add_device(device, old.status)
        if same_link:
            await self._cancel(old)

    @staticmethod
    async def _cancel(device: _Device) -> None:
        device.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await device.task

    def _status_changed(self, status: DeviceStatus) -> None:
        self._dirty.add(status.device)
        self._status_wakeup.set()

    async def _publish_statuses(self, publisher: StatusPublisher) -> None:
        """Keep each device's retained status current: on every change, and refreshed
        periodically (a restarted broker without persistence has lost the retained ones)."""
        backoff = Backoff(self.config.runtime.retry_min, self.config.runtime.retry_max)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._status_wakeup.wait(), self.config.runtime.status_interval
                )
            self._status_wakeup.clear()
            pending = set(self._dirty) if self._dirty else set(self.devices)
            self._dirty.clear()
            for device_id in sorted(pending):
                device = self.devices.get(device_id)
                if device is None:
                    continue
                try:
                    await publisher.publish_device_status(device.status)
                except SinkError:
                    self._dirty.update(pending)
                    await asyncio.sleep(backoff.next_delay())
                    break
            else:
                backoff.reset()

    async def _keep_outbox(self) -> None:
        """Save sink confirmations every second; enforce the outbox's bounds every ten."""
        assert self.outbox is not None
        for tick in itertools.count():
            await asyncio.sleep(1.0)
            self.outbox.persist()
            if tick % 10 == 0:
                self.outbox.enforce_bounds()

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        for device_id in list(self.devices):
            device = self.devices[device_id]
            device.task.cancel()
        await asyncio.gather(*(d.task for d in self.devices.values()), return_exceptions=True)
        timeout = self.config.runtime.shutdown_timeout
        for buffer in self.buffers:
            try:
                async with asyncio.timeout(timeout):
                    await buffer.drain()
            except TimeoutError:
                log.warning(
                    "sink %s: %d readings not written at shutdown", buffer.sink.name, buffer.depth
                )
        for worker in workers:
            worker.cancel()
        for device in self.devices.values():
            device.status.state = DeviceState.OFFLINE
            device.status.last_error = "gateway stopped"
            for publisher in self._publishers:
                with contextlib.suppress(SinkError, TimeoutError):
                    await asyncio.wait_for(publisher.publish_device_status(device.status), timeout)
