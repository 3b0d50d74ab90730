"""/api/v1/devices/{id}/events: a device's latest events and alarm transitions (OPC UA), and
acknowledging or confirming an alarm through the write path (policy and audit apply)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import Control, KnownQuery, Store, Viewer, Writes
from gateway.api.problems import ERRORS, MEDIA_TYPE, Problem
from gateway.api.routeset import RouteSet
from gateway.control import NotFound
from gateway.local_store import EVENTS_KEPT
from gateway.writeback import result_of

__all__ = ["routes"]

routes = RouteSet(prefix="/api/v1", tags=["events"], responses=ERRORS)


class DeviceEvents(BaseModel):
    device: str
    items: list[dict[str, Any]] = Field(
        description="Newest first: event_id, type, source, message, severity, time_ns and,"
        " for conditions, condition_id, condition, active, acked, confirmed, retain"
    )


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=512, description="Sent to the server with it")


class AnswerResult(BaseModel):
    device: str
    event_id: str
    condition_id: str
    action: Literal["acknowledge", "confirm"]
    result: str
    error: str | None = None


@routes.get(
    "/devices/{device_id}/events",
    response_model=DeviceEvents,
    dependencies=[KnownQuery("limit", "min_severity")],
)
async def events(
    device_id: str,
    control: Control,
    store: Store,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=EVENTS_KEPT)] = 50,
    min_severity: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> DeviceEvents:
    """The device's latest events (at most the last 200 are kept), newest first."""
    control.device(device_id)
    kept = store.events.get(device_id, ())
    chosen = [e.as_dict() for e in kept if e.severity >= min_severity][:limit]
    return DeviceEvents(device=device_id, items=chosen)


@routes.post(
    "/devices/{device_id}/events/{event_id}/{action}",
    response_model=AnswerResult,
    responses={
        429: {"model": Problem, "description": "Too many writes to this device this minute"},
        502: {"model": Problem, "description": "The server refused it or did not answer"},
    },
)
async def answer(
    device_id: str,
    event_id: str,
    action: Literal["acknowledge", "confirm"],
    request: Request,
    control: Control,
    store: Store,
    writes: Writes,
    role: Viewer,
    body: AnswerBody | None = None,
) -> Any:
    """Acknowledge or confirm the alarm occurrence ``event_id`` (one of the device's latest
    events). Refused like a write when writes are off, the token may only read, the device is
    not online or the rate is exceeded; audited either way."""
    control.device(device_id)
    event = store.event(device_id, event_id)
    if event is None:
        raise NotFound(
            f"device {device_id!r} has no event {event_id!r} among its latest {EVENTS_KEPT}"
        )
    outcome = await writes.answer_condition(
        control.write_target(device_id),
        device_id,
        event,
        action,
        (body or AnswerBody()).comment,
        who=f"token:{request.state.caller}",
        path="page" if request.headers.get("x-gateway-page") else "rest",
        may_write=role in ("operator", "admin"),
    )
    assert event.condition_id is not None  # answer_condition refuses other events
    result = AnswerResult(
        device=device_id,
        event_id=event_id,
        condition_id=event.condition_id,
        action=action,
        result=result_of(outcome),
        error=outcome.error,
    )
    if outcome.written:
        return result
    problem = Problem(
        title=f"{action.capitalize()} failed",
        status=502,
        detail=f"{device_id}: {event.condition or event.condition_id}: {outcome.error}",
    )
    return JSONResponse(problem.model_dump(mode="json"), status_code=502, media_type=MEDIA_TYPE)
