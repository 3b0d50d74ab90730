"""The runtime: device supervisors in, report-by-exception, and one buffer per sink out.

It owns buffering and retries for every sink, decides device state (gateway/health.py),
publishes availability, and stops in order: devices first, then a bounded flush of what is
buffered, then offline states, then the sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from gateway.backoff import Backoff
from gateway.buffer import SinkBuffer
from gateway.config import DeviceConfig, GatewayConfig
from gateway.cycle import Cycle
from gateway.errors import GatewayError, SinkError
from gateway.health import DeviceHealth
from gateway.looplag import LoopLag
from gateway.memory import settle_long_lived
from gateway.normalize import ReportFilter
from gateway.outbox import Outbox
from gateway.plugins import ConnectorFactory
from gateway.protocols import Connector, HasBackgroundTasks, Sink, StatusPublisher
from gateway.reading import Batch
from gateway.registry import DATABASE_FILE
from gateway.status import DeviceState, DeviceStatus
from gateway.supervisor import DeviceSupervisor
from gateway.tags import TagBase

__all__ = ["CoreTaskFailed", "Runtime"]

log = logging.getLogger(__name__)

_START_SLICE = 50
"""Devices started between two yields to the event loop."""
_MAX_DEATHS = 5
_DEATH_WINDOW = 60.0
"""A core task that dies this many times within this many seconds stops the gateway."""


class CoreTaskFailed(GatewayError):
    """A core task keeps dying: the process exits non-zero and its supervisor restarts it."""


class _Device:
    def __init__(
        self,
        config: DeviceConfig,
        task: asyncio.Task[None],
        status: DeviceStatus,
        connector: Connector,
        tags: tuple[TagBase, ...],
    ) -> None:
        self.config = config
        self.task = task
        self.status = status
        self.connector = connector
        self.tags = tags
        """Its tags, one tuple per configuration (sinks tell a changed device by identity)."""


class _StatusChannel:
    """The devices whose retained status one publisher still has to publish."""

    def __init__(self, publisher: StatusPublisher, name: str) -> None:
        self.publisher = publisher
        self.name = name
        self.dirty: set[str] = set()
        self.wakeup = asyncio.Event()


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        sinks: Sequence[Sink],
        factories: Mapping[str, ConnectorFactory],
    ) -> None:
        """``factories``: the connector factory of each protocol type."""
        self.config = config
        self.sinks = list(sinks)
        names = [sink.name for sink in self.sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        durable = [s.name for s in self.sinks if s.durable]
        self.outbox: Outbox | None = None
        if config.runtime.outbox.enabled and durable:
            path = config.gateway.data_dir / DATABASE_FILE
            self.outbox = Outbox(path, durable, config.runtime.outbox)
        self.buffers = [
            SinkBuffer(sink, config.runtime, self.outbox if sink.name in durable else None)
            for sink in self.sinks
        ]
        self._live = [b for b in self.buffers if self.outbox is None or b.sink.name not in durable]
        """Buffers handed a batch at once; the others get it once the outbox stored it."""
        self._behind_outbox = [b for b in self.buffers if b not in self._live]
        self._intake: list[Batch] = []
        self._intake_wakeup = asyncio.Event()
        self.devices: dict[str, _Device] = {}
        self._factories = factories
        self._channels = [
            _StatusChannel(s, s.name) for s in self.sinks if isinstance(s, StatusPublisher)
        ]
        self._tasks: asyncio.TaskGroup | None = None
        self.started = asyncio.Event()
        self.down: dict[str, str] = {}
        """Core tasks that died and wait for their restart, with the reason (see /healthz)."""
        self.restarts: dict[str, int] = {}
        """Restarts of each core task since the start."""
        self.loop_lag = LoopLag()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        for sink in self.sinks:
            await sink.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                workers = [
                    tasks.create_task(self._keep_running(name, work), name=name)
                    for name, work in self._core_tasks().items()
                ]
                for count, device in enumerate(d for d in self.config.devices if d.enabled):
                    self.add_device(device)
                    if count % _START_SLICE == _START_SLICE - 1:
                        # Each new device's first step (its connection) runs in the next loop
                        # pass: a thousand at once would hold the loop for ~100 ms.
                        await asyncio.sleep(0)
                settle_long_lived()
                self.started.set()
                await stop.wait()
                await self._shutdown(workers)
        except* CoreTaskFailed as failed:
            # Giving up must not cost what was accepted: what the devices yielded and the
            # outbox did not store yet is stored now, for the next start to deliver.
            await self._store_before_exit()
            raise failed.exceptions[0] from None
        finally:
            self._tasks = None
            for sink in self.sinks:
                await sink.stop()
            if self.outbox is not None:
                await asyncio.to_thread(self.outbox.close)  # waits for its writer thread

    def _core_tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """What must run as long as the gateway runs, by name (the names /healthz shows)."""
        core: dict[str, Callable[[], Awaitable[None]]] = {
            f"sink:{buffer.sink.name}": buffer.run for buffer in self.buffers
        }
        core["loop-lag"] = self.loop_lag.run
        for channel in self._channels:
            core[f"status:{channel.name}"] = functools.partial(self._publish_statuses, channel)
        if self.outbox is not None:
            core["outbox"] = self._keep_outbox
            core["outbox:writer"] = self._write_intake
        for sink in self.sinks:
            if isinstance(sink, HasBackgroundTasks):
                for name, work in sink.background_tasks().items():
                    core[f"{sink.name}:{name}"] = work
        return core

    async def _keep_running(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run a core task as long as the runtime runs. If it dies, its traceback is logged at
        once, /healthz says so while it is down, and it is restarted after a backoff; if it
        dies again and again (``_MAX_DEATHS`` times within ``_DEATH_WINDOW`` s), the gateway
        stops with an error, so that systemd restarts the whole process."""
        backoff = Backoff(self.config.runtime.retry_min, self.config.runtime.retry_max)
        loop = asyncio.get_running_loop()
        deaths: deque[float] = deque()
        while True:
            try:
                await work()
                raise RuntimeError("it returned, though it should run until stopped")
            except Exception as exc:  # a core task's boundary: it must never die silently
                now = loop.time()
                deaths.append(now)
                while deaths[0] < now - _DEATH_WINDOW:
                    deaths.popleft()
                reason = f"{type(exc).__name__}: {exc}"
                self.down[name] = reason
                if len(deaths) >= _MAX_DEATHS:
                    log.critical(
                        "core task %s died %d times within %g s; stopping the gateway",
                        name,
                        len(deaths),
                        _DEATH_WINDOW,
                        exc_info=exc,
                    )
                    raise CoreTaskFailed(f"core task {name} keeps failing: {reason}") from exc
                log.error("core task %s died; restarting it: %s", name, reason, exc_info=exc)
                await asyncio.sleep(backoff.next_delay())
                del self.down[name]
                self.restarts[name] = self.restarts.get(name, 0) + 1

    def add_device(self, device: DeviceConfig, status: DeviceStatus | None = None) -> None:
        """Start polling a device (``status`` carries its counters over from a replaced one)."""
        if self._tasks is None:
            raise RuntimeError("the runtime is not running")
        if device.id in self.devices:
            raise ValueError(f"device {device.id!r} is already running")
        status = status or DeviceStatus(device.id)
        groups = self.config.groups_of(device)
        connector = self._factories[device.type](device, groups)
        report = ReportFilter(tag for group in groups for tag in group.tags)
        runtime_config = self.config.runtime
        device_id, labels = device.id, device.labels
        measurement = self.config.measurement_of(device)
        live, intake, wakeup = self._live, self._intake, self._intake_wakeup
        durable = bool(self._behind_outbox)

        def deliver(batch: Batch) -> None:
            for buffer in live:
                buffer.put(batch)
            if durable:
                intake.append(batch)
                wakeup.set()

        def on_cycle(cycle: Cycle) -> None:
            if cycle.events:  # every one delivered: report by exception is for values
                deliver(Batch(device_id, [], cycle.time_ns, labels, measurement, cycle.events))
            if not cycle.readings:
                return
            batch = Batch(device_id, cycle.readings, cycle.time_ns, labels, measurement)
            report.apply(batch)
            if batch.readings:  # else report by exception left nothing to report
                deliver(batch)

        supervisor = DeviceSupervisor(
            connector,
            DeviceHealth(status, runtime_config.degraded_hold),
            Backoff(runtime_config.reconnect_min, runtime_config.reconnect_max),
            on_cycle,
            self._status_changed,
        )
        task = self._tasks.create_task(supervisor.run(), name=f"device:{device.id}")
        tags = tuple(tag for group in groups for tag in group.tags)
        self.devices[device.id] = _Device(device, task, status, connector, tags)

    async def remove_device(self, device_id: str, *, forget: bool = False) -> None:
        """Stop a device and publish it offline; ``forget`` then clears its retained status."""
        device = self.devices.pop(device_id)
        await self._cancel(device)
        device.status.state = DeviceState.OFFLINE
        device.status.last_error = "removed" if forget else "disabled"
        for channel in self._channels:
            channel.dirty.discard(device_id)
            try:
                await channel.publisher.publish_device_statuses([device.status])
                if forget:
                    await channel.publisher.clear_device_status(device_id)
            except SinkError as exc:
                log.warning("device %s: status not published on removal: %s", device_id, exc)

    async def replace_device(self, device: DeviceConfig) -> None:
        """Apply a changed device live: only its own connector restarts. When its connection
        settings are unchanged, the new connector starts before the old one stops, so a link
        shared by a pool (Modbus) stays open and nothing reconnects."""
        old = self.devices.pop(device.id)
        same_link = old.config.connection() == device.connection()
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
        for channel in self._channels:
            channel.dirty.add(status.device)
            channel.wakeup.set()

    async def _publish_statuses(self, channel: _StatusChannel) -> None:
        """Keep each device's retained status current: on every change, and every device
        refreshed every ``status_interval`` whatever the others do (a restarted broker without
        persistence has lost the retained ones). All pending statuses go out together and are
        confirmed together: one round trip, not one per device."""
        backoff = Backoff(self.config.runtime.retry_min, self.config.runtime.retry_max)
        loop = asyncio.get_running_loop()
        interval = self.config.runtime.status_interval
        refresh_at = loop.time() + interval
        while True:
            wait = refresh_at - loop.time()
            if wait > 0 and not channel.dirty:
                # Not asyncio.wait_for: in Python 3.11 it drops a cancellation that comes with
                # its result (the shutdown wakes this up as it cancels it), and the stop hung.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await channel.wakeup.wait()
            channel.wakeup.clear()
            now = loop.time()
            if now >= refresh_at:
                pending, refresh_at = set(self.devices), now + interval
                channel.dirty.clear()
            else:
                pending, channel.dirty = channel.dirty, set()
            statuses = [self.devices[d].status for d in sorted(pending) if d in self.devices]
            if not statuses:
                continue
            try:
                await channel.publisher.publish_device_statuses(statuses)
            except SinkError:
                channel.dirty.update(pending)
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()

    async def _write_intake(self) -> None:
        """Store what the devices yielded since the last write, together, then hand it to the
        durable sinks: one transaction per round, however many batches came meanwhile."""
        while True:
            await self._intake_wakeup.wait()
            self._intake_wakeup.clear()
            await self._store_intake()

    async def _store_intake(self) -> None:
        assert self.outbox is not None
        intake = self._intake
        while intake:
            batches = intake[:]
            intake.clear()  # in place: the devices' callbacks hold this list
            ids = await self.outbox.store(batches)
            for buffer in self._behind_outbox:
                for batch, row_id in zip(batches, ids, strict=True):
                    buffer.put(batch, row_id)
            self.outbox.handed_out(ids)

    async def _store_before_exit(self) -> None:
        if self.outbox is None or not self._intake:
            return
        try:
            async with asyncio.timeout(self.config.runtime.shutdown_timeout):
                await self._store_intake()
        except Exception as exc:  # exiting anyway: say what could not be kept
            log.error("outbox: %d batches not stored before the exit: %s", len(self._intake), exc)

    async def _keep_outbox(self) -> None:
        """Save sink confirmations every second; enforce the outbox's bounds every ten."""
        assert self.outbox is not None
        for tick in itertools.count():
            await asyncio.sleep(1.0)
            await self.outbox.persist()
            if tick % 10 == 0:
                await self.outbox.enforce_bounds()

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        for device in self.devices.values():
            device.task.cancel()
        await asyncio.gather(*(d.task for d in self.devices.values()), return_exceptions=True)
        timeout = self.config.runtime.shutdown_timeout
        if self.outbox is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._store_intake()  # the last cycles, before the final flush
            except TimeoutError:
                log.warning("outbox: the last batches were not stored at shutdown")
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
        statuses = [device.status for device in self.devices.values()]
        for status in statuses:
            status.state = DeviceState.OFFLINE
            status.last_error = "gateway stopped"
        if not statuses:
            return
        for channel in self._channels:
            with contextlib.suppress(SinkError, TimeoutError):
                await asyncio.wait_for(channel.publisher.publish_device_statuses(statuses), timeout)
