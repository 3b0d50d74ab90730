"""Dependency aliases the routes use (FastAPI template style)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from gateway.api.auth import Role, require
from gateway.assembly import Gateway
from gateway.control import ControlPlane
from gateway.errors import ConfigError, ConfigProblem
from gateway.local_store import LocalStore
from gateway.runtime import Runtime
from gateway.writeback import WriteService

__all__ = [
    "Admin",
    "Control",
    "GatewayRuntime",
    "KnownQuery",
    "Operator",
    "Store",
    "Viewer",
    "Writes",
]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _control(request: Request) -> ControlPlane:
    return _gateway(request).control


def _runtime(request: Request) -> Runtime:
    return _gateway(request).runtime


def _store(request: Request) -> LocalStore:
    return _gateway(request).store


def _writes(request: Request) -> WriteService:
    return _gateway(request).writes


Control = Annotated[ControlPlane, Depends(_control)]
GatewayRuntime = Annotated[Runtime, Depends(_runtime)]
Store = Annotated[LocalStore, Depends(_store)]
Writes = Annotated[WriteService, Depends(_writes)]
Viewer = Annotated[Role, Depends(require("viewer"))]
Admin = Annotated[Role, Depends(require("admin"))]
Operator = Annotated[Role, Depends(require("operator"))]


def KnownQuery(*names: str) -> Any:
    """Refuse query parameters the route does not know (422): a misspelt filter must not
    answer 200 with everything."""

    async def check(request: Request) -> None:
        unknown = [name for name in request.query_params if name not in names]
        if unknown:
            known = ", ".join(names)
            raise ConfigError(
                [
                    ConfigProblem(f"query.{name}", f"unknown parameter (known: {known})")
                    for name in unknown
                ]
            )

    return Depends(check)
