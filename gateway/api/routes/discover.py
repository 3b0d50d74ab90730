"""/api/v1/protocols/{type}/discover: list what a server offers, to register a device by picking
its tags.

Admin only, since it makes the gateway connect to an address given in the request. Only
protocols whose plugin implements ``gateway.plugins.Discoverer`` have it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.deps import Admin
from gateway.api.problems import ERRORS, Problem, problem
from gateway.api.routeset import RouteSet
from gateway.config import problems_from
from gateway.errors import ConfigError, ConnectorError
from gateway.plugins import Discoverer, PluginContext, Plugins

__all__ = ["DiscoverRequest", "DiscoverResult", "DiscoveredVariable", "build_routes"]


class DiscoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection: dict[str, Any] = Field(
        description="How to reach and log in to the server: the connection fields of the"
        " protocol's device",
        examples=[{"endpoint": "opc.tcp://10.0.0.21:4840"}],
    )
    start: str | None = Field(
        default=None,
        min_length=1,
        description="Where to start, in the protocol's words (an OPC UA node id);"
        " default: the server's usual root (OPC UA: Objects)",
    )
    depth: int = Field(default=3, ge=1, le=5, description="Levels below the start")
    limit: int = Field(default=2000, ge=1, le=10_000, description="Variables at most")
    timeout: float = Field(default=30, gt=0, le=120, description="Seconds for the whole listing")


class DiscoveredVariable(BaseModel):
    address: str = Field(description="Where it is read, e.g. an OPC UA node id")
    path: list[str] = Field(description="Names from the start down to it")
    data_type: str
    access: str = Field(description="r, w, rw or - (neither)")
    array: bool
    tag: dict[str, Any] = Field(description="A tag reading it, ready for a device's groups")


class DiscoverResult(BaseModel):
    type: str
    variables: list[DiscoveredVariable]
    truncated: bool = Field(description="More variables than the limit: start lower")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Problem, "description": "This protocol cannot discover"},
    404: {"model": Problem, "description": "No such protocol"},
    502: {"model": Problem, "description": "The server cannot be reached or browsed"},
    504: {"model": Problem, "description": "The listing did not finish within the timeout"},
}


def _context(request: Request) -> PluginContext:
    settings = request.app.state.gateway.config.gateway
    return PluginContext(settings.id, settings.data_dir)


def build_routes(plugins: Plugins) -> RouteSet:
    routes = RouteSet(prefix="/api/v1/protocols", tags=["protocols"], responses=_RESPONSES)
    discoverers = {t: p for t, p in plugins.protocols.items() if isinstance(p, Discoverer)}

    @routes.post(
        "/{type}/discover",
        response_model=DiscoverResult,
        # The body is validated here, after the type is known, so that every bad field (the
        # options' and the connection's, by the protocol's model) is named in one answer.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DiscoverRequest.model_json_schema()}},
            }
        },
    )
    async def discover(
        type: str,
        request: Request,
        _: Admin,
        body: Annotated[dict[str, Any], Body()],
    ) -> DiscoverResult | JSONResponse:
        """The variables of a server below ``start``, each with a tag ready to register."""
        if type not in plugins.protocols:
            raise HTTPException(404, f"no protocol {type!r} is installed")
        plugin = discoverers.get(type)
        if plugin is None:
            raise HTTPException(400, f"protocol {type!r} cannot discover: give its tags")
        problems = []
        options = connection = None
        try:
            options = DiscoverRequest.model_validate(body)
        except ValidationError as exc:
            problems += problems_from(exc, plugins=plugins)
        # Not a mapping at all: the options' validation has named it already.
        if isinstance(fields := body.get("connection"), dict):
            try:
                connection = plugin.connection_model.model_validate(fields)
            except ValidationError as exc:
                problems += problems_from(exc, ("connection",), plugins=plugins)
        if problems:
            raise ConfigError(problems)
        assert options is not None and connection is not None
        try:
            async with asyncio.timeout(options.timeout):
                found = await plugin.discover(
                    connection, options.start, options.depth, options.limit + 1, _context(request)
                )
        except ConnectorError as exc:
            return problem(502, "Bad Gateway", str(exc))
        except TimeoutError:
            return problem(
                504,
                "Gateway Timeout",
                f"the listing did not finish within {options.timeout:g} s:"
                " start lower or fewer levels, or allow more time",
            )
        variables = [
            DiscoveredVariable(
                address=v.address,
                path=list(v.path),
                data_type=v.data_type,
                access=v.access,
                array=v.array,
                tag=dict(v.tag),
            )
            for v in found[: options.limit]
        ]
        return DiscoverResult(type=type, variables=variables, truncated=len(found) > options.limit)

    return routes
