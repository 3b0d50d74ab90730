"""The app factory: ``create_app(gateway)``, the HTTP face of a gateway built elsewhere.

The app owns nothing: ``gateway run`` builds the ``Gateway`` and runs it whether or not the
API is on; the routes reach it through dependencies (gateway/api/deps.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from gateway.api.auth import TokenBook
from gateway.api.guard import BodyLimit, SecurityHeaders
from gateway.api.methods import AllowedMethods
from gateway.api.problems import MEDIA_TYPE, install_problem_handlers
from gateway.api.routes import (
    devices,
    discover,
    events,
    page,
    profiles,
    protocols,
    system,
    telemetry,
    writes,
)
from gateway.assembly import Gateway
from gateway.metrics import RuntimeCollector, WritesCollector

__all__ = ["create_app"]

log = logging.getLogger(__name__)


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
    metrics.register(WritesCollector(gateway.writes))
    app.state.gateway, app.state.tokens, app.state.metrics = gateway, tokens, metrics
    # Set by the server when the gateway stops, so endless streams end instead of holding it up.
    app.state.stopping = asyncio.Event()
    install_problem_handlers(app)
    plugins = gateway.plugins
    for routes in (
        devices.build_routes(plugins),
        profiles.build_routes(plugins),
        protocols.build_routes(plugins),
        protocols.me_routes(),
        discover.build_routes(plugins),
        telemetry.routes,
        writes.routes,
        events.routes,
        system.routes,
        page.routes,
    ):
        routes.add_to(app.router)
    app.add_middleware(AllowedMethods, routes=lambda: app.routes)
    app.add_middleware(BodyLimit, limit=gateway.config.api.max_body_kb * 1024)
    app.add_middleware(SecurityHeaders, hsts=gateway.config.api.tls is not None)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # Now, before polling starts: building the document takes ~170 ms.
    app.openapi()
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, saying what is really sent: errors as problem+json."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    # Errors with a model are problems; a state report (/healthz) has none.
                    schema_ref = content.get("application/json", {}).get("schema", {}).get("$ref")
                    if status[0] in "45" and schema_ref is not None:
                        content[MEDIA_TYPE] = content.pop("application/json")
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema
