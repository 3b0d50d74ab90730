"""The OpenAPI document (``/openapi.json``) and its pages (``/docs``, ``/redoc``), built on the
first request for them.

Building the document takes ~170 ms of CPU and keeps ~2.3 MiB (pydantic's JSON schemas of
every plugin's models) after it: a gateway whose document nobody reads spends neither. The
first request builds it in a worker thread, so the event loop goes on polling meanwhile (the
thread gives the interpreter back every few ms); the answer is kept as its JSON (80 kB), not
as the dict (0.7 MiB).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from gateway.api.problems import MEDIA_TYPE

__all__ = ["DOCUMENT_URL", "OpenApiDocument"]

DOCUMENT_URL = "/openapi.json"


class OpenApiDocument:
    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._json: bytes | None = None
        self._building = asyncio.Lock()

    def build(self) -> dict[str, Any]:
        """FastAPI's document, saying what is really sent: errors as problem+json."""
        app = self._app
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
        return schema

    async def json(self) -> bytes:
        async with self._building:
            if self._json is None:
                self._json = await asyncio.to_thread(lambda: orjson.dumps(self.build()))
        return self._json

    def serve(self) -> None:
        """Add the document's routes to the app (made with ``openapi_url=None``), and make
        ``app.openapi()`` build this document."""
        app = self._app
        app.openapi = self.build  # type: ignore[method-assign]
        title = app.title

        async def document(_: Request) -> Response:
            return Response(await self.json(), media_type="application/json")

        async def swagger(_: Request) -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=DOCUMENT_URL, title=f"{title} - Swagger UI")

        async def redoc(_: Request) -> HTMLResponse:
            return get_redoc_html(openapi_url=DOCUMENT_URL, title=f"{title} - ReDoc")

        app.add_route(DOCUMENT_URL, document, include_in_schema=False)
        app.add_route("/docs", swagger, include_in_schema=False)
        app.add_route("/redoc", redoc, include_in_schema=False)
