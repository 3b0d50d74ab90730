"""The app factory: ``create_app(config, sinks)`` with a lifespan that owns the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from prometheus_client import CollectorRegistry

from connectors.registry import ConnectorFactory
from gateway.api.auth import TokenBook
from gateway.api.problems import install_problem_handlers
from gateway.api.routes import devices, profiles, system, telemetry
from gateway.config import GatewayConfig
from gateway.control import ControlPlane
from gateway.errors import GatewayError
from gateway.history import History
from gateway.local_store import LocalStore
from gateway.metrics import RuntimeCollector
from gateway.protocols import Sink
from gateway.registry import DATABASE_FILE, Registry, open_database
from gateway.runtime import Runtime

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_PAGE = Path(__file__).with_name("static") / "index.html"


def create_app(
    config: GatewayConfig,
    sinks: Sequence[Sink],
    connector_factory: ConnectorFactory | None = None,
) -> FastAPI:
    """The control plane and, inside its lifespan, the whole gateway."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = config.gateway.data_dir / DATABASE_FILE
        connection = open_database(database)
        history = History(database, config.history) if config.history.enabled else None
        store = LocalStore(history)
        runtime = Runtime(config, [*sinks, store], connector_factory)
        control = ControlPlane(config, Registry(connection), runtime, store)
        tokens = TokenBook(list(config.api.tokens))
        if tokens.generated:
            log.warning("no API tokens configured; this run's admin token: %s", tokens.generated)
        metrics = CollectorRegistry(auto_describe=True)
        metrics.register(RuntimeCollector(runtime))
        app.state.runtime, app.state.store, app.state.control = runtime, store, control
        app.state.tokens, app.state.metrics = tokens, metrics
        stop = asyncio.Event()
        running = asyncio.create_task(runtime.run(stop), name="runtime")
        started = asyncio.create_task(runtime.started.wait())
        await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            started.cancel()
            connection.close()
            raise GatewayError(f"the gateway did not start: {running.exception()}")
        try:
            yield
        finally:
            stop.set()
            await running
            connection.close()

    app = FastAPI(
        title="edge-gateway control plane",
        version="1",
        summary="Register devices at runtime and watch their telemetry.",
        lifespan=lifespan,
    )
    # Set by the server when the gateway stops, so endless streams end instead of holding it up.
    app.state.stopping = asyncio.Event()
    install_problem_handlers(app)
    for module in (devices, profiles, telemetry, system):
        app.include_router(module.router)

    html = _PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    return app
