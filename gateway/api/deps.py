"""Dependency aliases the routes use (FastAPI template style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.api.auth import Role, require
from gateway.assembly import Gateway
from gateway.control import ControlPlane
from gateway.local_store import LocalStore
from gateway.runtime import Runtime

__all__ = ["Admin", "Control", "GatewayRuntime", "Store", "Viewer"]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _control(request: Request) -> ControlPlane:
    return _gateway(request).control


def _runtime(request: Request) -> Runtime:
    return _gateway(request).runtime


def _store(request: Request) -> LocalStore:
    return _gateway(request).store


Control = Annotated[ControlPlane, Depends(_control)]
GatewayRuntime = Annotated[Runtime, Depends(_runtime)]
Store = Annotated[LocalStore, Depends(_store)]
Viewer = Annotated[Role, Depends(require("viewer"))]
Admin = Annotated[Role, Depends(require("admin"))]
