"""The runtime's buffer in front of one sink: bounded, batched, retried with backoff.

Sinks never buffer or retry themselves. Past ``buffer_max_readings`` the oldest batches are
dropped and counted (never silently). A batch being written is held until the sink confirms it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from gateway.backoff import Backoff
from gateway.config import RuntimeConfig
from gateway.errors import RetryableSinkError, SinkError
from gateway.metrics import LatencyHistogram
from gateway.protocols import Sink
from gateway.reading import Batch

__all__ = ["SinkBuffer"]

log = logging.getLogger(__name__)


class SinkBuffer:
    def __init__(self, sink: Sink, config: RuntimeConfig) -> None:
        self.sink = sink
        self._max_readings = config.buffer_max_readings
        self._chunk = config.write_max_batches
        self._backoff = Backoff(config.retry_min, config.retry_max)
        self._queue: deque[Batch] = deque()
        self._queued_readings = 0
        self._inflight: list[Batch] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written_batches = 0
        self.written_readings = 0
        self.dropped_readings = 0
        self.failed_writes = 0
        self.last_error: str | None = None
        self.last_write_ns: int | None = None
        self.latency = LatencyHistogram()
        """How old each batch was when the sink confirmed it (poll to delivery)."""

    @property
    def depth(self) -> int:
        """Readings waiting for this sink, including those being written."""
        return self._queued_readings + sum(len(b.readings) for b in self._inflight)

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def put(self, batch: Batch) -> None:
        self._queue.append(batch)
        self._queued_readings += len(batch.readings)
        while self._queued_readings > self._max_readings and len(self._queue) > 1:
            oldest = self._queue.popleft()
            self._queued_readings -= len(oldest.readings)
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
        """Write forever; cancelled by the runtime after drain()."""
        while True:
            await self._wakeup.wait()
            while self._queue:
                self._take_chunk()
                await self._write_inflight()
            self._wakeup.clear()
            self._idle.set()

    def _take_chunk(self) -> None:
        for _ in range(min(self._chunk, len(self._queue))):
            batch = self._queue.popleft()
            self._queued_readings -= len(batch.readings)
            self._inflight.append(batch)

    async def _write_inflight(self) -> None:
        while True:
            try:
                await self.sink.write(self._inflight)
            except RetryableSinkError as exc:
                self._failed(exc)
                delay = max(exc.retry_after or 0.0, self._backoff.next_delay())
                await asyncio.sleep(delay)
                continue
            except SinkError as exc:
                # Retrying cannot help: count the loss and move on.
                lost = sum(len(b.readings) for b in self._inflight)
                log.error(
                    "sink %s: write refused for good, %d readings dropped: %s",
                    self.sink.name,
                    lost,
                    exc,
                )
                self.failed_writes += 1
                self.dropped_readings += lost
                self._inflight.clear()
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
            self.written_batches += len(self._inflight)
            self.written_readings += sum(len(b.readings) for b in self._inflight)
            for batch in self._inflight:
                self.latency.observe((now - batch.cycle_ns) / 1e9)
            self.last_write_ns = now
            self._inflight.clear()
            return

    def _failed(self, exc: SinkError) -> None:
        self.failed_writes += 1
        if self.last_error is None:
            log.warning(
                "sink %s: write failed: %s; holding the data and retrying", self.sink.name, exc
            )
        self.last_error = str(exc)

    async def drain(self) -> None:
        """Wait until everything buffered is written (callers bound it with a timeout)."""
        await self._idle.wait()
