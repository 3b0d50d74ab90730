"""The app factory: ``create_app(gateway)``, the HTTP face of a gateway built elsewhere.

The app owns nothing: ``gateway run`` builds the ``Gateway`` and runs it whether or not the
API is on; the routes reach it through dependencies (gateway/api/deps.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from fastapi import FastAPI

from gateway.api.auth import TokenBook
from gateway.api.guard import BodyLimit, SecurityHeaders
from gateway.api.methods import AllowedMethods
from gateway.api.openapi import OpenApiDocument
from gateway.api.problems import install_problem_handlers
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
from gateway.api.scrapes import Scrapes
from gateway.assembly import Gateway

__all__ = ["create_app"]

# FastAPI asks of every route's models whether they are pydantic v1 models, importing
# pydantic.v1 to find out: 1.7 MiB and 20 ms for a package nothing here uses. Marked absent,
# that import fails and FastAPI takes its path for a pydantic without v1 (as on Python 3.14).
sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]

log = logging.getLogger(__name__)


def create_app(gateway: Gateway) -> FastAPI:
    """The control plane of ``gateway``; serve it while ``gateway.run()`` runs."""
    app = FastAPI(
        title="edge-gateway control plane",
        version="1",
        summary="Register devices at runtime and watch their telemetry.",
        openapi_url=None,  # served by OpenApiDocument, built on first request
    )
    tokens = TokenBook(list(gateway.config.api.tokens))
    if tokens.generated:
        log.warning("no API tokens configured; this run's admin token: %s", tokens.generated)
    app.state.gateway, app.state.tokens, app.state.metrics = gateway, tokens, Scrapes(gateway)
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
    OpenApiDocument(app).serve()
    app.add_middleware(AllowedMethods, routes=lambda: app.routes)
    app.add_middleware(BodyLimit, limit=gateway.config.api.max_body_kb * 1024)
    app.add_middleware(SecurityHeaders, hsts=gateway.config.api.tls is not None)
    return app
