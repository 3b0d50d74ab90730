"""Prometheus metrics, read from the runtime's own counters at scrape time.

Nothing is counted twice and nothing is added to the hot path: devices and sink buffers keep
plain integers, and this collector turns them into metric families when /metrics is read.

A scrape runs on a thread (at 1,000 running devices it is ~9,000 samples, tens of ms of work
the event loop must not wait for): every dict of the runtime is copied (``list(...)``, one step
under the GIL) before it is walked, as the loop may change it meanwhile.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.protocols import CountsRejections
from gateway.runtime import Runtime
from gateway.status import DeviceState
from gateway.writeback import WriteService

__all__ = ["RuntimeCollector", "WritesCollector"]


class RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        per_device = {
            "readings": ("Good values read", "values"),
            "polls": ("Poll cycles", "polls"),
            "requests": ("Protocol requests", "requests"),
            "request_errors": ("Failed protocol requests", "request_errors"),
            "overruns": ("Cycles that started late", "overruns"),
            "skipped_cycles": ("Cycles skipped under overload", "skipped_cycles"),
            "busy_retries": ("Requests retried because the device was busy", "busy_retries"),
            "connects": ("Successful connects", "connects"),
            "reconnects": ("Connections lost or refused, then retried", "reconnects"),
        }
        statuses = [device.status for device in list(runtime.devices.values())]
        for name, (help_text, attribute) in per_device.items():
            family = CounterMetricFamily(f"gateway_device_{name}", help_text, labels=["device"])
            for status in statuses:
                family.add_metric([status.device], getattr(status, attribute))
            yield family
        by_state = Counter(status.state for status in statuses)
        # Configured but not running: disabled (the runtime's config holds every device).
        by_state[DeviceState.DISABLED] += len(runtime.config.devices) - len(statuses)
        devices = GaugeMetricFamily("gateway_devices", "Devices by state", labels=["state"])
        for state in DeviceState:
            devices.add_metric([state.value], by_state.get(state, 0))
        yield devices
        depth = GaugeMetricFamily(
            "gateway_sink_buffer_readings", "Readings waiting", labels=["sink"]
        )
        written = CounterMetricFamily(
            "gateway_sink_written_readings", "Readings written", labels=["sink"]
        )
        dropped = CounterMetricFamily(
            "gateway_sink_dropped_readings",
            "Readings dropped (overflow or rejected)",
            labels=["sink"],
        )
        failures = CounterMetricFamily(
            "gateway_sink_failed_writes", "Failed writes", labels=["sink"]
        )
        latency = HistogramMetricFamily(
            "gateway_sink_latency_seconds",
            "Age of a batch when its sink confirmed it (poll to delivery)",
            labels=["sink"],
        )
        rejected = CounterMetricFamily(
            "gateway_sink_rejected_points",
            "Points a database refused in partial writes (type conflicts, bad lines)",
            labels=["sink"],
        )
        skipped = CounterMetricFamily(
            "gateway_sink_skipped_values",
            "Values a sink cannot represent (NaN, infinity, arrays in line protocol)",
            labels=["sink"],
        )
        backlog_age = GaugeMetricFamily(
            "gateway_sink_backlog_age_seconds",
            "Age of the oldest reading a sink has not confirmed (0 when none); durable sinks",
            labels=["sink"],
        )
        outbox = runtime.outbox
        now_ms = time.time() * 1000
        for buffer in runtime.buffers:
            sink = [buffer.sink.name]
            if outbox is not None and buffer.sink.name in outbox.pending_readings:
                oldest = outbox.oldest_ms.get(buffer.sink.name)
                backlog_age.add_metric(sink, 0.0 if oldest is None else (now_ms - oldest) / 1000)
            if isinstance(buffer.sink, CountsRejections):
                rejected.add_metric(sink, buffer.sink.rejected_points)
                skipped.add_metric(sink, buffer.sink.skipped_values)
            depth.add_metric(sink, buffer.depth)
            written.add_metric(sink, buffer.written_readings)
            dropped.add_metric(sink, buffer.dropped)
            failures.add_metric(sink, buffer.failed_writes)
            latency.add_metric(sink, buckets=buffer.latency.buckets(), sum_value=buffer.latency.sum)
        yield from (depth, written, dropped, failures, latency, rejected, skipped, backlog_age)
        yield from self._storage_and_tasks()

    def _storage_and_tasks(self) -> Iterator[Metric]:
        runtime = self._runtime
        unstored = CounterMetricFamily(
            "gateway_outbox_unstored_readings",
            "Readings the outbox could not store (sent live, not kept for a replay), by reason",
            labels=["reason"],
        )
        if runtime.outbox is not None:
            for reason, count in list(runtime.outbox.unstored_readings.items()):
                unstored.add_metric([reason], count)
        restarts = CounterMetricFamily(
            "gateway_core_task_restarts", "Restarts of core tasks that died", labels=["task"]
        )
        for task, count in list(runtime.restarts.items()):
            restarts.add_metric([task], count)
        down = GaugeMetricFamily(
            "gateway_core_tasks_down", "Core tasks that died and wait for their restart"
        )
        down.add_metric([], len(runtime.down))
        yield from (unstored, restarts, down)
        lag = runtime.loop_lag
        loop = HistogramMetricFamily(
            "gateway_event_loop_lag_seconds",
            "How late the event loop ran what was due (anything that held it)",
        )
        loop.add_metric([], buckets=lag.histogram.buckets(), sum_value=lag.histogram.sum)
        longest = GaugeMetricFamily(
            "gateway_event_loop_lag_max_seconds", "The longest event-loop lag since the start"
        )
        longest.add_metric([], lag.max)
        yield from (loop, longest)


class WritesCollector(Collector):
    """Write attempts by result (written, refused, failed, unknown, not attempted)."""

    def __init__(self, writes: WriteService) -> None:
        self._writes = writes

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "gateway_writes", "Attempts to set values on devices, by result", labels=["result"]
        )
        for result, count in list(self._writes.counts.items()):
            family.add_metric([result], count)
        yield family
        failures = CounterMetricFamily(
            "gateway_audit_unstored", "Audit entries that could not be stored (logged instead)"
        )
        failures.add_metric([], self._writes.audit.failures)
        yield failures
