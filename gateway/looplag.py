"""How late the event loop runs what is due: the measure of anything that holds it (a slow
handler, a blocking call). Polling, publishing and the API all wait for the same loop."""

from __future__ import annotations

import asyncio

from gateway.latency import LatencyHistogram

__all__ = ["LoopLag"]


class LoopLag:
    """Wakes every ``interval`` s and records how late it woke: a stall of X ms shows as a
    lag of up to X ms."""

    def __init__(self, interval: float = 0.025) -> None:
        self.interval = interval
        self.histogram = LatencyHistogram()
        self.max = 0.0
        """The longest lag since the start, in seconds."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            self.histogram.observe(lag)
            self.max = max(self.max, lag)
