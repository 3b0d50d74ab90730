"""The runtime's buffer in front of one sink: bounded, batched, retried with backoff.

Sinks never buffer or retry themselves. A batch being written is held until the sink confirms
it. Without an outbox, past ``buffer_max_mb`` the oldest batches are dropped and counted.
With the durable outbox (gateway/outbox.py) nothing is dropped here: the batches that do not fit
in memory stay on disk, and once the sink is back they are replayed oldest first at
``outbox.drain_rate`` readings per second, interleaved with live batches, which keep flowing
with their usual latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from gateway.backoff import Backoff
from gateway.config import RuntimeConfig
from gateway.errors import RetryableSinkError, SinkError
from gateway.latency import LatencyHistogram
from gateway.outbox import Outbox
from gateway.protocols import Sink
from gateway.reading import Batch

__all__ = ["SinkBuffer"]

log = logging.getLogger(__name__)

_Entry = tuple[int, Batch]
"""A batch and its outbox id (0 without an outbox)."""


class SinkBuffer:
    def __init__(self, sink: Sink, config: RuntimeConfig, outbox: Outbox | None = None) -> None:
        self.sink = sink
        self._outbox = outbox
        self._max_readings = config.buffer_max_readings
        self._chunk = config.write_max_batches
        self._backoff = Backoff(config.retry_min, config.retry_max)
        self._queue: deque[_Entry] = deque()
        self._queued_readings = 0
        self._inflight: list[_Entry] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._drain_rate = float(config.outbox.drain_rate)
        self._tokens = self._drain_rate
        self._refilled = time.monotonic()
        self.backlog = outbox is not None and outbox.pending_readings[sink.name] > 0
        """Confirmed-missing batches wait in the outbox (after an outage or a restart)."""
        self.written_readings = 0
        self.dropped_readings = 0
        self.failed_writes = 0
        self.last_error: str | None = None
        self.latency = LatencyHistogram()
        """How old each batch was when the sink confirmed it (poll to delivery)."""

    @property
    def depth(self) -> int:
        """Readings waiting for this sink, including those being written (and, with the
        outbox, those waiting on disk, and those it could not store, in memory)."""
        if self._outbox is not None:
            unstored = sum(
                len(batch.readings)
                for entries in (self._queue, self._inflight)
                for row_id, batch in entries
                if not row_id
            )
            return self._outbox.pending_readings[self.sink.name] + unstored
        return self._queued_readings + sum(len(b.readings) for _, b in self._inflight)

    @property
    def dropped(self) -> int:
        """Readings this sink will never get: overflow, refused writes, outbox bounds."""
        if self._outbox is not None:
            return self.dropped_readings + self._outbox.dropped_readings[self.sink.name]
        return self.dropped_readings

    @property
    def behind_outbox(self) -> bool:
        """Whether what this sink is given is on disk until it confirms it (at-least-once)."""
        return self._outbox is not None

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def put(self, batch: Batch, row_id: int = 0) -> None:
        """``row_id``: the batch's outbox id; 0 when it is not in the outbox (no outbox, or
        the outbox could not store it)."""
        if row_id and self.last_error is not None and self._outbox is not None:
            # The sink is failing: this batch waits on disk, not in memory, and goes out
            # with the backlog once the sink is back, after the live data.
            self.backlog = True
            return
        self._queue.append((row_id, batch))
        self._queued_readings += len(batch.readings)
        while self._queued_readings > self._max_readings and len(self._queue) > 1:
            oldest_id, oldest = self._queue.popleft()
            self._queued_readings -= len(oldest.readings)
            if oldest_id and self._outbox is not None:
                self.backlog = True  # still on disk: replayed when the sink is back
                continue
            if not self.dropped_readings:
                log.warning(
                    "sink %s: buffer full (%d readings); dropping the oldest and counting them",
                    self.sink.name,
                    self._max_readings,
                )
            self.dropped_readings += len(oldest.readings)
        self._idle.clear()
        self._wakeup.set()

    async def run(self) -> None:
        """Write forever; cancelled by the runtime after drain(). Restartable: a write that
        was under way when it died is written first."""
        if self._inflight:
            await self._write_inflight()
        while True:
            if self._queue:
                self._take_chunk()
                await self._write_inflight()
            if self.backlog and not await self._replay_some():
                self.backlog = False
            if not self._queue:
                self._idle.set()
                if not self.backlog:
                    self._wakeup.clear()
                    await self._wakeup.wait()

    def _take_chunk(self) -> None:
        for _ in range(min(self._chunk, len(self._queue))):
            entry = self._queue.popleft()
            self._queued_readings -= len(entry[1].readings)
            self._inflight.append(entry)

    async def _replay_some(self) -> bool:
        """Write one chunk of the outbox's backlog, within the drain rate; False when there
        is no backlog left."""
        assert self._outbox is not None
        now = time.monotonic()
        self._tokens = min(
            self._drain_rate, self._tokens + (now - self._refilled) * self._drain_rate
        )
        self._refilled = now
        if self._tokens <= 0:
            if self._queue:
                return True  # live data first; the backlog waits for its budget
            await asyncio.sleep(-self._tokens / self._drain_rate)  # the rate limit itself
            return True
        below = next((row_id for row_id, _ in self._queue if row_id), None)
        entries = await self._outbox.backlog(self.sink.name, below, max(int(self._tokens), 1))
        if not entries:
            return False
        self._inflight = entries
        self._tokens -= sum(len(b.readings) for _, b in entries)
        await self._write_inflight()
        return True

    async def _write_inflight(self) -> None:
        while True:
            self._forget_dropped()
            if not self._inflight:
                return
            batches = [batch for _, batch in self._inflight]
            readings = sum(len(b.readings) for b in batches)
            try:
                await self.sink.write(batches)
            except RetryableSinkError as exc:
                self._failed(exc)
                delay = max(exc.retry_after or 0.0, self._backoff.next_delay())
                await asyncio.sleep(delay)
                continue
            except SinkError as exc:
                # Retrying cannot help: count the loss and move on.
                readings -= self._forget_dropped()  # the outbox's bounds counted those
                log.error(
                    "sink %s: write refused for good, %d readings dropped: %s",
                    self.sink.name,
                    readings,
                    exc,
                )
                self.failed_writes += 1
                self.dropped_readings += readings
                self._settled()
                return
            if self.last_error is not None:
                log.info(
                    "sink %s: writing again after %d failed attempts",
                    self.sink.name,
                    self._backoff.attempt,
                )
                self.last_error = None
            self._backoff.reset()
            now = time.time_ns()
            self.written_readings += readings
            for batch in batches:
                self.latency.observe((now - batch.cycle_ns) / 1e9)
            # Dropped by the outbox's bounds during this write: delivered after all, but
            # already counted as dropped (an over-count, never an undercount).
            self._forget_dropped()
            self._settled()
            return

    def _forget_dropped(self) -> int:
        """Take out of the write the batches the outbox's bounds dropped (and counted) while
        they waited in memory or were being written; their readings."""
        if self._outbox is None:
            return 0
        name, outbox = self.sink.name, self._outbox
        dropped = [entry for entry in self._inflight if entry[0] and outbox.settled(name, entry[0])]
        if not dropped:
            return 0
        self._inflight = [
            entry for entry in self._inflight if not entry[0] or not outbox.settled(name, entry[0])
        ]
        return sum(len(batch.readings) for _, batch in dropped)

    def _settled(self) -> None:
        """The write in flight is done with (delivered or given up): confirm what of it is in
        the outbox."""
        if self._outbox is not None:
            stored = [(row_id, len(batch.readings)) for row_id, batch in self._inflight if row_id]
            ids = (row_id for row_id, _ in stored)
            self._outbox.confirm(self.sink.name, ids, sum(count for _, count in stored))
        self._inflight = []

    def _failed(self, exc: SinkError) -> None:
        self.failed_writes += 1
        self._spill()
        if self.last_error is None:
            log.warning(
                "sink %s: write failed: %s; holding the data and retrying", self.sink.name, exc
            )
        self.last_error = str(exc)

    def _spill(self) -> None:
        """Forget the queued batches that are in the outbox: during an outage they wait on
        disk, so memory stays small and, once the sink is back, live data goes before them."""
        if self._outbox is None or not self._queue:
            return
        kept = deque(entry for entry in self._queue if not entry[0])
        if len(kept) == len(self._queue):
            return
        self._queue = kept
        self._queued_readings = sum(len(batch.readings) for _, batch in kept)
        self.backlog = True

    async def drain(self) -> None:
        """Wait until what is in memory is written (callers bound it with a timeout); with the
        outbox, the rest is on disk already."""
        await self._idle.wait()
