"""The app factory: ``create_app(gateway)``, the HTTP face of a gateway built elsewhere.

The app owns nothing: ``gateway run`` builds the ``Gateway`` and runs it whether or not the
API is on; the routes reach it through dependencies (gateway/api/deps.py).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from prometheus_client import CollectorRegistry

from gateway.api.auth import TokenBook
from gateway.api.problems import install_problem_handlers
from gateway.api.routes import devices, profiles, protocols, system, telemetry
from gateway.assembly import Gateway
from gateway.metrics import RuntimeCollector

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_PAGE = Path(__file__).with_name("static") / "index.html"


def create_app(gateway: Gateway) -> FastAPI:
    """The control plane of ``gateway``; serve it while ``gateway.run()`` runs."""
    app = FastAPI(
        title="edge-gateway control plane",
        version="1",
        summary="Register devices at runtime and watch their telemetry.",
    )
    tokens = TokenBook(list(gateway.config.api.tokens))
    if tokens.generated:
        log.warning("no API tokens configured; this run's admin token: %s", tokens.generated)
    metrics = CollectorRegistry(auto_describe=True)
    metrics.register(RuntimeCollector(gateway.runtime))
    app.state.gateway, app.state.tokens, app.state.metrics = gateway, tokens, metrics
    # Set by the server when the gateway stops, so endless streams end instead of holding it up.
    app.state.stopping = asyncio.Event()
    install_problem_handlers(app)
    app.include_router(devices.build_router(gateway.plugins))
    app.include_router(profiles.build_router(gateway.plugins))
    app.include_router(protocols.build_router(gateway.plugins))
    app.include_router(telemetry.router)
    app.include_router(system.router)

    html = _PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    return app
