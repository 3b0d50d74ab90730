"""The local store: a sink that keeps what the page and the API show without any database.

Latest reading per tag, the latest events of each device, a fan-out of live batches to
Server-Sent Events subscribers, and the recent history (gateway/history.py). It sits behind the
runtime's buffer like any sink.

The latest readings are kept as the columns of the batches that brought them, not as the
readings themselves: a reading (a 7-tuple, 96 bytes) would outlive its batch for every tag of
every device (9 MiB at 100 devices × 1000 tags). A batch is turned into columns in one
C-level pass (``zip(*readings)``, about 20 ns per reading more than a dict of readings);
readings are made again only when asked for (the API, a Sparkplug birth).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import orjson

from gateway.events import Event
from gateway.history import History
from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.mqtt_payload import encode_telemetry

__all__ = ["LocalStore"]

EVENTS_KEPT = 200
"""Latest events kept per device (the page and ``/devices/{id}/events``; acknowledging an
alarm finds its occurrence here)."""
_SUBSCRIBER_QUEUE = 256
"""Batches a slow SSE client may lag behind before it misses some; it is then sent
``{"missed": n}`` before the next batch."""


class _Subscriber:
    def __init__(self, device: str | None) -> None:
        self.device = device
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self.missed = 0


LAYOUTS_KEPT = 8
"""Column sets kept per device, one per tag layout (a poll group's batch has the same tags
every cycle); beyond it (OPC UA notifications carry whichever tags changed) they are folded
into readings per tag."""

_Columns = tuple[
    tuple[Value, ...], tuple[Quality, ...], tuple[int, ...], tuple[int, ...], tuple[str | None, ...]
]
"""Values, qualities, source and receipt times and reasons, by position in the layout."""


class _Latest:
    """One device's latest readings: column sets by tag layout, and readings folded out of
    them."""

    __slots__ = ("columns", "folded")

    def __init__(self) -> None:
        self.columns: dict[tuple[str, ...], _Columns] = {}
        self.folded: dict[str, Reading] = {}

    def add(self, readings: Sequence[Reading]) -> None:
        # Readings are all 7-tuples: ``strict`` would only cost the check.
        _, tags, values, qualities, sources, received, reasons = zip(*readings, strict=False)
        columns = self.columns
        if len(columns) >= LAYOUTS_KEPT and tags not in columns:
            self.folded = self.readings(readings[0].device)
            columns.clear()
        columns[tags] = (values, qualities, sources, received, reasons)

    def readings(self, device: str) -> dict[str, Reading]:
        """The newest reading of each tag (by receipt; the later one within a batch)."""
        newest = dict(self.folded)
        for tags, columns in self.columns.items():
            for tag, *fields in zip(tags, *columns, strict=True):
                known = newest.get(tag)
                if known is None or fields[3] >= known.received_ns:
                    newest[tag] = Reading(device, tag, *fields)
        return newest


class LocalStore:
    durable = False
    """Not behind the outbox: what it shows is about now, and it lives in this process."""

    def __init__(self, history: History | None, name: str = "local") -> None:
        self.name = name
        self.history = history
        self._latest: dict[str, _Latest] = {}
        self.events: dict[str, deque[Event]] = {}
        """Newest first."""
        self._subscribers: set[_Subscriber] = set()

    async def start(self) -> None:
        pass

    def background_tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {} if self.history is None else {"history": self.history.run}

    async def write(self, batches: Sequence[Batch]) -> None:
        latest = self._latest
        for batch in batches:
            if batch.events:
                kept = self.events.get(batch.device)
                if kept is None:
                    kept = self.events[batch.device] = deque(maxlen=EVENTS_KEPT)
                kept.extendleft(batch.events)
            if not batch.readings:
                continue
            newest = latest.get(batch.device)
            if newest is None:
                newest = latest[batch.device] = _Latest()
            newest.add(batch.readings)
            if self.history is not None:
                self.history.add(batch)
            if self._subscribers:
                self._publish(batch)

    def _publish(self, batch: Batch) -> None:
        payload = encode_telemetry(batch)
        # {"ts":...} → {"device":"x","ts":...}: the device in the event, one encode per batch.
        event = b'{"device":' + orjson.dumps(batch.device) + b"," + payload[1:]
        for subscriber in self._subscribers:
            if subscriber.device is not None and subscriber.device != batch.device:
                continue
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscriber.missed += 1

    async def subscribe(
        self, device: str | None, until: asyncio.Event, keepalive: float = 15.0
    ) -> AsyncIterator[bytes | None]:
        """Live batches as JSON, for one device or all, until ``until`` is set (the gateway is
        stopping: an endless stream must not hold up its shutdown). ``None`` every
        ``keepalive`` seconds without data, for the caller to keep proxies from timing out."""
        subscriber = _Subscriber(device)
        self._subscribers.add(subscriber)
        stopping = asyncio.ensure_future(until.wait())
        try:
            while not until.is_set():
                getting = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait(
                    {getting, stopping}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    if not until.is_set():
                        yield None
                    continue
                if subscriber.missed:
                    yield orjson.dumps({"missed": subscriber.missed})
                    subscriber.missed = 0
                yield getting.result()
        finally:
            stopping.cancel()
            self._subscribers.discard(subscriber)

    def current(self, device: str) -> dict[str, Reading]:
        """The device's latest reading of each tag (made on each call: the API's and a
        Sparkplug birth's, not the hot path)."""
        kept = self._latest.get(device)
        return {} if kept is None else kept.readings(device)

    def event(self, device: str, event_id: str) -> Event | None:
        """One of the device's latest events, by its id."""
        return next((e for e in self.events.get(device, ()) if e.event_id == event_id), None)

    def forget(self, device: str) -> None:
        self._latest.pop(device, None)
        self.events.pop(device, None)

    async def stop(self) -> None:
        """After the runtime stopped the history's task: the last samples are kept."""
        if self.history is not None:
            await self.history.flush()
            self.history.close()
