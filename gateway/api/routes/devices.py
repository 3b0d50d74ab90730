"""/api/v1/devices: register, list, change, remove, enable and disable devices.

The bodies are the installed protocol plugins' device models, so the routes are built for a
set of plugins (``build_routes``). No ``from __future__ import annotations`` here: the body
annotations are evaluated when the routes are defined, with the plugins' union.
"""

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import Body, Query, Request, Response
from pydantic import Field, ValidationError

from gateway.api.bulk import CSV_MEDIA_TYPE, parse_csv
from gateway.api.deps import Admin, Control, KnownQuery, Viewer
from gateway.api.models import (
    BULK_MAX,
    BulkCreated,
    BulkDevices,
    DeviceCounts,
    DevicePage,
    DevicePublic,
    StatusPublic,
)
from gateway.api.problems import ERRORS, MalformedBody
from gateway.api.routeset import RouteSet
from gateway.config import DeviceConfig, device_adapter, device_union, problems_from
from gateway.control import ControlPlane, NotFound, Source
from gateway.errors import ConfigError, ConfigProblem
from gateway.plugins import Plugins
from gateway.status import DeviceState

__all__ = ["ERRORS", "build_routes"]

_YIELD_EVERY = 100
"""Listed devices between two yields to the event loop (a 1,000-device page takes ~30 ms)."""


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


def build_routes(plugins: Plugins) -> RouteSet:
    routes = RouteSet(prefix="/api/v1/devices", tags=["devices"], responses=ERRORS)
    adapter = device_adapter(plugins)
    DeviceBody = device_union(plugins)

    @routes.get(
        "",
        response_model=DevicePage,
        dependencies=[KnownQuery("label", "protocol", "profile", "state", "q", "offset", "limit")],
    )
    async def list_devices(
        control: Control,
        _: Viewer,
        label: Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w\-]*=")]],
            Query(description="key=value; repeat to require several"),
        ] = [],  # noqa: B006
        protocol: Annotated[str | None, Query(description="Device type, e.g. modbus")] = None,
        profile: Annotated[str | None, Query(description="Devices of this profile")] = None,
        state: Annotated[DeviceState | None, Query(description="Devices in this state")] = None,
        q: Annotated[
            str | None, Query(max_length=64, description="Part of the id, any case")
        ] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Devices in the order they were added, filtered through indexes (labels, profile,
        protocol) and then by state and id; ``total`` counts every match."""
        wanted: dict[str, str] = {}
        for index, item in enumerate(label):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError([ConfigProblem(f"query.label[{index}]", "expected key=value")])
            wanted[key] = value
        ids = control.catalog.select(wanted, profile, protocol)
        if state is not None:
            ids = [i for i in ids if control.state(i) is state]
        if q is not None:
            folded = q.casefold()
            ids = [i for i in ids if folded in i.casefold()]
        ids = list(ids)
        items = []
        for count, device_id in enumerate(ids[offset : offset + limit], 1):
            device, source = control.device(device_id)
            items.append(public(control, device, source).model_dump(mode="json"))
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        page = {"items": items, "total": len(ids), "offset": offset, "limit": limit}
        return Response(orjson.dumps(page), media_type="application/json")

    @routes.get("/counts", response_model=DeviceCounts)
    async def count_devices(control: Control, _: Viewer) -> DeviceCounts:
        """How many devices there are, by state (for a page's filter buttons)."""
        counts = control.counts()
        return DeviceCounts(total=sum(counts.values()), states=counts)

    @routes.post("", response_model=DevicePublic, status_code=201)
    async def create_device(
        device: DeviceBody,  # type: ignore[valid-type]
        control: Control,
        _: Admin,
    ) -> DevicePublic:
        """Register a device; polling starts within one poll interval."""
        await control.create_devices([device])
        return public(control, device, "api")

    @routes.post(
        "/bulk",
        response_model=BulkCreated,
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/BulkDevices"}},
                    CSV_MEDIA_TYPE: {
                        "schema": {"type": "string"},
                        "example": "id,profile,host,port,unit,labels\n"
                        "press-1,press,10.0.0.21,502,1,line=2;cell=a\n",
                    },
                },
            }
        },
    )
    async def create_devices_in_bulk(
        request: Request,
        control: Control,
        _: Admin,
        profile: Annotated[
            str | None, Query(description="The profile of rows that name none (CSV)")
        ] = None,
    ) -> BulkCreated:
        """Register many devices in one call, all of them or none: JSON (a profile and entries
        holding what differs) or CSV (a header row, then one device per row: id, profile,
        host, port, unit, labels as ``k=v;k=v``...). Every bad entry is named."""
        body = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == CSV_MEDIA_TYPE:
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise MalformedBody(f"the CSV is not UTF-8: {exc}") from None
            # Off the loop: 10,000 rows take ~50 ms to read (the GIL still lets the loop run).
            entries, unreadable = await asyncio.to_thread(parse_csv, text)
        elif kind in ("application/json", ""):
            try:
                bulk = await asyncio.to_thread(BulkDevices.model_validate_json, body)
            except ValidationError as exc:
                if any(e["type"] == "json_invalid" for e in exc.errors()):
                    raise MalformedBody(f"the body is not JSON: {exc.errors()[0]['msg']}") from None
                raise ConfigError(problems_from(exc)) from exc
            profile = bulk.profile
            entries = [(f"devices[{i}]", entry) for i, entry in enumerate(bulk.devices)]
            unreadable = []
        else:
            raise MalformedBody(
                f"content-type {kind!r}: send application/json or {CSV_MEDIA_TYPE}", status=415
            )
        devices = await _validate(control, entries, profile, unreadable)
        await control.create_devices(devices, [where for where, _ in entries])
        return BulkCreated(created=len(devices), devices=[d.id for d in devices])

    async def _validate(
        control: ControlPlane,
        entries: list[tuple[str, dict[str, Any]]],
        default: str | None,
        problems: list[ConfigProblem],
    ) -> list[DeviceConfig]:
        """Every entry as a device of its profile; all problems (with ``problems``, those
        found before) in one error."""
        if len(entries) > BULK_MAX:
            raise ConfigError(
                [ConfigProblem("body", f"{len(entries)} devices; at most {BULK_MAX} per call")]
            )
        devices = []
        for count, (where, entry) in enumerate(entries, 1):
            profile_id = entry.get("profile", default)
            if profile_id is None:
                problems.append(
                    ConfigProblem(f"{where}.profile", "required: name a profile (or ?profile=)")
                )
                continue
            try:
                profile, _source = control.profile(profile_id)
            except NotFound:
                known = ", ".join(p.id for p, _ in control.profiles()) or "none defined"
                problems.append(
                    ConfigProblem(f"{where}.profile", f"unknown profile {profile_id!r} ({known})")
                )
                continue
            try:
                devices.append(
                    adapter.validate_python({**entry, "type": profile.type, "profile": profile.id})
                )
            except ValidationError as exc:
                problems += [
                    ConfigProblem(f"{where}.{p.path}" if p.path else where, p.message)
                    for p in problems_from(exc, union_at_root=True, plugins=plugins)
                ]
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if problems:
            raise ConfigError(problems)
        return devices

    @routes.get("/{device_id}", response_model=DevicePublic)
    async def get_device(device_id: str, control: Control, _: Viewer) -> DevicePublic:
        device, source = control.device(device_id)
        return public(control, device, source)

    @routes.put("/{device_id}", response_model=DevicePublic)
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

    @routes.patch("/{device_id}", response_model=DevicePublic)
    async def patch_device(
        device_id: str,
        control: Control,
        _: Admin,
        changes: Annotated[dict[str, Any], Body(examples=[{"labels": {"line": "2"}}])],
    ) -> DevicePublic:
        """Change some fields: objects merge, lists and values replace."""
        device = await control.patch_device(device_id, changes)
        return public(control, device, "api")

    @routes.delete("/{device_id}", status_code=204, response_class=Response)
    async def delete_device(device_id: str, control: Control, _: Admin) -> Response:
        """Stop the device, publish it offline and clear its retained status."""
        await control.delete_device(device_id)
        return Response(status_code=204)

    @routes.post("/{device_id}/enable", response_model=DevicePublic)
    async def enable_device(device_id: str, control: Control, _: Admin) -> DevicePublic:
        device = await control.patch_device(device_id, {"enabled": True})
        return public(control, device, "api")

    @routes.post("/{device_id}/disable", response_model=DevicePublic)
    async def disable_device(device_id: str, control: Control, _: Admin) -> DevicePublic:
        device = await control.patch_device(device_id, {"enabled": False})
        return public(control, device, "api")

    @routes.get("/{device_id}/status", response_model=StatusPublic)
    async def device_status(device_id: str, control: Control, _: Viewer) -> StatusPublic:
        return StatusPublic.of(control.status(device_id))

    return routes
