"""Dependency aliases the routes use (FastAPI template style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.api.auth import Role, require
from gateway.control import ControlPlane
from gateway.local_store import LocalStore
from gateway.runtime import Runtime

__all__ = ["Admin", "Control", "GatewayRuntime", "Store", "Viewer"]


def _control(request: Request) -> ControlPlane:
    control: ControlPlane = request.app.state.control
    return control


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _store(request: Request) -> LocalStore:
    store: LocalStore = request.app.state.store
    return store


Control = Annotated[ControlPlane, Depends(_control)]
GatewayRuntime = Annotated[Runtime, Depends(_runtime)]
Store = Annotated[LocalStore, Depends(_store)]
Viewer = Annotated[Role, Depends(require("viewer"))]
Admin = Annotated[Role, Depends(require("admin"))]
