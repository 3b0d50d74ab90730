"""Telemetry: latest values, tag history from the local store, and a live event stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import StreamingResponse

from gateway.api.deps import Control, KnownQuery, Store, Viewer
from gateway.api.models import HistoryPoint, LatestValues, TagHistory, TagValue
from gateway.api.problems import ERRORS
from gateway.api.routeset import RouteSet
from gateway.control import NotFound
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["routes"]

routes = RouteSet(prefix="/api/v1", tags=["telemetry"], responses=ERRORS)

MAX_POINTS = 10_000
_MAX_MS = 2**53
"""Timestamps beyond this (year 285,000) are no time: refused (422), never an overflow."""


@routes.get("/devices/{device_id}/latest", response_model=LatestValues, dependencies=[KnownQuery()])
async def latest(device_id: str, control: Control, store: Store, _: Viewer) -> LatestValues:
    control.device(device_id)
    readings = store.current(device_id)
    values = {
        tag: TagValue(
            value=r.value, quality=r.quality.value, ts=r.source_ns // 1_000_000, reason=r.reason
        )
        for tag, r in readings.items()
    }
    return LatestValues(device=device_id, values=values)


@routes.get(
    "/devices/{device_id}/tags/{tag}/history",
    response_model=TagHistory,
    dependencies=[KnownQuery("start", "end", "bucket")],
)
async def history(
    device_id: str,
    tag: str,
    control: Control,
    store: Store,
    _: Viewer,
    start: Annotated[
        int | None, Query(ge=0, le=_MAX_MS, description="ms since the epoch; default: 1 h ago")
    ] = None,
    end: Annotated[
        int | None, Query(ge=0, le=_MAX_MS, description="ms since the epoch; default: now")
    ] = None,
    bucket: Annotated[
        int | None,
        Query(ge=1, le=10**9, description="seconds: min/max/mean per bucket (downsampling)"),
    ] = None,
) -> TagHistory:
    if tag not in control.tag_names(device_id):
        raise NotFound(f"device {device_id!r} has no tag {tag!r}")
    now = int(time.time() * 1000)
    end_ms = now if end is None else end
    start_ms = end_ms - 3_600_000 if start is None else start
    if start_ms > end_ms:
        raise ConfigError([ConfigProblem("query.start", "must not be after end")])
    if store.history is None:
        raise ConfigError(
            [ConfigProblem("sinks.local.history.enabled", "the local history is switched off")]
        )
    bucket_ms = bucket * 1000 if bucket else None
    samples = (await store.history.query(device_id, tag, start_ms, end_ms, bucket_ms))[-MAX_POINTS:]
    points = [HistoryPoint(ts=s.ts, value=s.value, min=s.min, max=s.max) for s in samples]
    return TagHistory(
        device=device_id, tag=tag, start=start_ms, end=end_ms, bucket_ms=bucket_ms, points=points
    )


@routes.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    dependencies=[KnownQuery("device")],
)
async def stream(
    request: Request,
    store: Store,
    control: Control,
    _: Viewer,
    device: Annotated[str | None, Query(description="only this device")] = None,
) -> StreamingResponse:
    """Live readings as Server-Sent Events: one ``telemetry`` event per device and cycle,
    with the MQTT telemetry payload plus ``device``; a comment line every 15 s when idle.
    The stream ends when the gateway stops."""
    if device is not None:
        control.device(device)
    stopping: asyncio.Event = request.app.state.stopping

    async def events() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for event in store.subscribe(device, stopping):
            if event is None:
                yield b": keep-alive\n\n"
            else:
                yield b"event: telemetry\ndata: " + event + b"\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
