"""/api/v1/protocols: the installed protocol plugins and the fields of their devices that the
page's registration form asks for (so the page knows no protocol by name)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request

from gateway.api.deps import Viewer
from gateway.api.models import Caller, FieldPublic, ProtocolPublic
from gateway.api.problems import ERRORS
from gateway.api.routeset import RouteSet
from gateway.devices import DeviceBase
from gateway.plugins import Discoverer, Plugins, ProtocolPlugin, RegistrationForm

__all__ = ["build_routes", "describe", "me_routes"]

_KINDS: dict[str, Literal["integer", "number"]] = {"integer": "integer", "number": "number"}


def describe(plugin: ProtocolPlugin) -> ProtocolPublic:
    schema = plugin.device_model.model_json_schema()
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    if isinstance(plugin, RegistrationForm):
        names = list(plugin.registration_fields)
    else:
        names = [n for n in properties if n in required and n not in DeviceBase.model_fields]
    fields = []
    for name in names:
        prop = properties.get(name, {})
        types = [prop.get("type")] + [option.get("type") for option in prop.get("anyOf", [])]
        kind: Literal["string", "integer", "number"] = next(
            (_KINDS[t] for t in types if t in _KINDS), "string"
        )
        default = prop.get("default")
        if prop.get("examples"):
            placeholder = str(prop["examples"][0])
        elif default is not None:
            placeholder = str(default)
        else:
            placeholder = prop.get("description")
        fields.append(
            FieldPublic(name=name, kind=kind, required=name in required, placeholder=placeholder)
        )
    return ProtocolPublic(type=plugin.type, fields=fields, discover=isinstance(plugin, Discoverer))


def build_routes(plugins: Plugins) -> RouteSet:
    routes = RouteSet(prefix="/api/v1/protocols", tags=["protocols"], responses=ERRORS)
    described = [describe(plugin) for plugin in plugins.protocols.values()]

    @routes.get("", response_model=list[ProtocolPublic])
    async def list_protocols(_: Viewer) -> list[ProtocolPublic]:
        return described

    return routes


def me_routes() -> RouteSet:
    routes = RouteSet(prefix="/api/v1", tags=["system"], responses=ERRORS)

    @routes.get("/me", response_model=Caller)
    async def me(request: Request, role: Viewer) -> Caller:
        """The token's name and role (the page shows what the role may do)."""
        writes = request.app.state.gateway.config.writes.enabled
        return Caller(name=request.state.caller, role=role, writes=writes)

    return routes
