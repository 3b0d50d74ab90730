"""uvicorn inside the gateway's own event loop, stopped by the gateway's signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from gateway.api.config import ApiConfig
from gateway.errors import GatewayError

__all__ = ["serve_api"]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn minus its signal capture: it would re-raise SIGTERM after a graceful stop and
    turn a clean exit into a kill. The gateway stops it by setting ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(app: FastAPI, api: ApiConfig, stop: asyncio.Event) -> None:
    """Serve ``app`` (the face of a gateway that runs beside it) until ``stop`` is set."""
    host, port = api.host, api.port
    tls = api.tls
    # access_log in the constructor: set afterwards, uvicorn has already set up its logger and
    # logs every request (every /metrics scrape) through the root handler.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=None if tls is None else str(tls.cert_file),
        ssl_keyfile=None if tls is None else str(tls.key_file),
        ssl_keyfile_password=None
        if tls is None or tls.key_password is None
        else tls.key_password.get_secret_value(),
        lifespan="on",
        ws="none",  # no WebSocket route: websockets stays unloaded (0.4 MiB)
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(), name="api")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        stopping.cancel()
        serving.result()
        raise GatewayError(f"the control plane stopped on its own (is {host}:{port} free?)")
    app.state.stopping.set()  # event streams end, so open pages do not hold up the stop
    server.should_exit = True
    await serving
