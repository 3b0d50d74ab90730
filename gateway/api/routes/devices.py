"""/api/v1/devices: register, list, change, remove, enable and disable devices.

The bodies are the installed protocol plugins' device models, so the router is built for a
set of plugins (``build_router``). No ``from __future__ import annotations`` here: the body
annotations are evaluated when the routes are defined, with the plugins' union.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import ValidationError

from gateway.api.deps import Admin, Control, Viewer
from gateway.api.models import BulkDevices, DevicePage, DevicePublic, StatusPublic
from gateway.api.problems import Problem
from gateway.config import DeviceConfig, device_adapter, device_union, problems_from
from gateway.control import ControlPlane, Source
from gateway.errors import ConfigError, ConfigProblem
from gateway.plugins import Plugins

__all__ = ["ERRORS", "build_router"]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in {
        401: "No or unknown token",
        403: "The token's role may not do this",
        404: "No such device",
        409: "Id taken, or defined by the configuration file",
        422: "Invalid body: every bad field is named",
    }.items()
}


def public(control: ControlPlane, device: DeviceConfig, source: Source) -> DevicePublic:
    return DevicePublic(
        id=device.id,
        type=device.type,
        address=device.address,
        source=source,
        enabled=device.enabled,
        profile=device.profile,
        labels=dict(device.labels),
        config=device.model_dump(mode="json"),
        status=StatusPublic.of(control.status(device.id)),
    )


def build_router(plugins: Plugins) -> APIRouter:
    router = APIRouter(prefix="/api/v1/devices", tags=["devices"], responses=ERRORS)
    adapter = device_adapter(plugins)
    DeviceBody = device_union(plugins)

    @router.get("", response_model=DevicePage)
    async def list_devices(
        control: Control,
        _: Viewer,
        label: Annotated[list[str], Query(description="key=value; repeat to require several")] = [],  # noqa: B006
        protocol: Annotated[str | None, Query(description="Device type, e.g. modbus")] = None,
        state: Annotated[
            str | None, Query(description="online, degraded, offline, disabled...")
        ] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DevicePage:
        wanted: dict[str, str] = {}
        for index, item in enumerate(label):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError([ConfigProblem(f"query.label[{index}]", "expected key=value")])
            wanted[key] = value
        items = []
        for device, source in control.devices():
            if protocol is not None and device.type != protocol:
                continue
            if any(device.labels.get(k) != v for k, v in wanted.items()):
                continue
            if state is not None and control.status(device.id).state.value != state:
                continue
            items.append((device, source))
        page = [public(control, d, s) for d, s in items[offset : offset + limit]]
        return DevicePage(items=page, total=len(items), offset=offset, limit=limit)

    @router.post("", response_model=DevicePublic, status_code=201)
    async def create_device(
        device: DeviceBody,  # type: ignore[valid-type]
        control: Control,
        _: Admin,
    ) -> DevicePublic:
        """Register a device; polling starts within one poll interval."""
        await control.create_devices([device])
        return public(control, device, "api")

    @router.post("/bulk", response_model=list[DevicePublic], status_code=201)
    async def create_devices_from_profile(
        body: BulkDevices, control: Control, _: Admin
    ) -> list[DevicePublic]:
        """Register many devices of one profile in one call: all of them or none."""
        profile, _source = control.profile(body.profile)
        devices, problems = [], []
        for index, entry in enumerate(body.devices):
            try:
                devices.append(
                    adapter.validate_python({**entry, "type": profile.type, "profile": profile.id})
                )
            except ValidationError as exc:
                problems += problems_from(exc, ("devices", index))
        if problems:
            raise ConfigError(problems)
        await control.create_devices(devices)
        return [public(control, d, "api") for d in devices]

    @router.get("/{device_id}", response_model=DevicePublic)
    async def get_device(device_id: str, control: Control, _: Viewer) -> DevicePublic:
        device, source = control.device(device_id)
        return public(control, device, source)

    @router.put("/{device_id}", response_model=DevicePublic)
    async def replace_device(
        device_id: str,
        device: DeviceBody,  # type: ignore[valid-type]
        control: Control,
        _: Admin,
    ) -> DevicePublic:
        """Replace a device, applied live: only its connector restarts, and it reconnects only
        if its connection settings changed."""
        await control.replace_device(device_id, device)
        return public(control, device, "api")

    @router.patch("/{device_id}", response_model=DevicePublic)
    async def patch_device(
        device_id: str,
        control: Control,
        _: Admin,
        changes: Annotated[dict[str, Any], Body(examples=[{"labels": {"line": "2"}}])],
    ) -> DevicePublic:
        """Change some fields: objects merge, lists and values replace."""
        device = await control.patch_device(device_id, changes)
        return public(control, device, "api")

    @router.delete("/{device_id}", status_code=204, response_class=Response)
    async def delete_device(device_id: str, control: Control, _: Admin) -> Response:
        """Stop the device, publish it offline and clear its retained status."""
        await control.delete_device(device_id)
        return Response(status_code=204)

    @router.post("/{device_id}/enable", response_model=DevicePublic)
    async def enable_device(device_id: str, control: Control, _: Admin) -> DevicePublic:
        device = await control.patch_device(device_id, {"enabled": True})
        return public(control, device, "api")

    @router.post("/{device_id}/disable", response_model=DevicePublic)
    async def disable_device(device_id: str, control: Control, _: Admin) -> DevicePublic:
        device = await control.patch_device(device_id, {"enabled": False})
        return public(control, device, "api")

    @router.get("/{device_id}/status", response_model=StatusPublic)
    async def device_status(device_id: str, control: Control, _: Viewer) -> StatusPublic:
        return StatusPublic.of(control.status(device_id))

    return router
