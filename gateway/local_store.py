"""The local store: a sink that keeps what the page and the API show without any database.

Latest reading per tag, the latest events of each device, a fan-out of live batches to
Server-Sent Events subscribers, and the recent history (gateway/history.py). It sits behind the
runtime's buffer like any sink.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from operator import itemgetter

import orjson

from gateway.events import Event
from gateway.history import History
from gateway.reading import Batch, Reading
from gateway.sinks.mqtt_payload import encode_telemetry

__all__ = ["LocalStore"]

_tag = itemgetter(1)
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


class LocalStore:
    durable = False
    """Not behind the outbox: what it shows is about now, and it lives in this process."""

    def __init__(self, history: History | None, name: str = "local") -> None:
        self.name = name
        self.history = history
        self.latest: dict[str, dict[str, Reading]] = {}
        self.events: dict[str, deque[Event]] = {}
        """Newest first."""
        self._subscribers: set[_Subscriber] = set()

    async def start(self) -> None:
        pass

    def background_tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {} if self.history is None else {"history": self.history.run}

    async def write(self, batches: Sequence[Batch]) -> None:
        latest = self.latest
        for batch in batches:
            if batch.events:
                kept = self.events.get(batch.device)
                if kept is None:
                    kept = self.events[batch.device] = deque(maxlen=EVENTS_KEPT)
                kept.extendleft(batch.events)
                if not batch.readings:
                    continue
            tags = latest.get(batch.device)
            if tags is None:
                tags = latest[batch.device] = {}
            tags.update(zip(map(_tag, batch.readings), batch.readings, strict=True))
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

    def event(self, device: str, event_id: str) -> Event | None:
        """One of the device's latest events, by its id."""
        return next((e for e in self.events.get(device, ()) if e.event_id == event_id), None)

    def forget(self, device: str) -> None:
        self.latest.pop(device, None)
        self.events.pop(device, None)

    async def stop(self) -> None:
        """After the runtime stopped the history's task: the last samples are kept."""
        if self.history is not None:
            await self.history.flush()
            self.history.close()
