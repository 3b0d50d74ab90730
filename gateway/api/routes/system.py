"""Liveness, readiness and Prometheus metrics (outside /api/v1, without a token)."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from gateway.api.deps import GatewayRuntime
from gateway.api.routeset import RouteSet
from gateway.api.scrapes import Scrapes
from gateway.protocols import Connectable

__all__ = ["routes"]

routes = RouteSet(tags=["system"])


@routes.get(
    "/healthz",
    responses={
        503: {
            "description": "A core task is down: which, and why",
            "content": {"application/json": {"example": {"status": "failing", "tasks": {}}}},
        }
    },
)
async def healthz(runtime: GatewayRuntime) -> JSONResponse:
    """The process is alive, its event loop answers and every core task runs (a sink's
    worker, a status publisher, the outbox keeper, the history): 503 names the ones that died
    and wait for their restart."""
    if runtime.down:
        return JSONResponse({"status": "failing", "tasks": runtime.down}, status_code=503)
    return JSONResponse({"status": "ok"})


@routes.get(
    "/readyz",
    responses={
        503: {
            "description": "A sink is not ready: each one named, with why",
            "content": {"application/json": {}},
        }
    },
)
async def readyz(runtime: GatewayRuntime) -> JSONResponse:
    """Ready when every sink is connected (MQTT broker) and writing without errors; a 503
    names each sink that is not, by its name in the config."""
    problems = {}
    for buffer in runtime.buffers:
        if isinstance(buffer.sink, Connectable) and not buffer.sink.connected:
            problems[buffer.sink.name] = "not connected"
        elif not buffer.healthy:
            problems[buffer.sink.name] = buffer.last_error or "failing"
    delivery = {
        buffer.sink.name: "at-least-once" if buffer.behind_outbox else "at-most-once"
        for buffer in runtime.buffers
    }
    body = {
        "status": "ready" if not problems else "not ready",
        "sinks": problems,
        "delivery": delivery,
    }
    return JSONResponse(body, status_code=503 if problems else 200)


@routes.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format: readings, errors, sink latency and buffer depth, devices by
    state."""
    scrapes: Scrapes = request.app.state.metrics
    text, media_type = await asyncio.to_thread(scrapes.scrape)  # see gateway/metrics.py
    return Response(text, media_type=media_type)
