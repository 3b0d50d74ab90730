"""/api/v1/devices/{id}/write: set values on a device (operator or admin), and /api/v1/audit:
every attempt, refused ones too (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.api.deps import Admin, Control, KnownQuery, Viewer, Writes
from gateway.api.problems import ERRORS, MEDIA_TYPE, FieldProblem, Problem
from gateway.api.routeset import RouteSet
from gateway.writeback import TagResult, WriteRequest, tag_results

__all__ = ["routes"]


class WriteAnswer(BaseModel):
    device: str
    results: list[TagResult]


class WriteFailed(Problem):
    results: list[TagResult]


class AuditPage(BaseModel):
    items: list[dict[str, Any]]
    next_before: int | None = Field(description="Pass as ?before= for older entries")


routes = RouteSet(prefix="/api/v1", tags=["writes"], responses=ERRORS)


@routes.post(
    "/devices/{device_id}/write",
    response_model=WriteAnswer,
    responses={
        429: {"model": Problem, "description": "Too many writes to this device this minute"},
        502: {"model": WriteFailed, "description": "The device refused or did not answer"},
    },
)
async def write(
    device_id: str,
    body: WriteRequest,
    request: Request,
    control: Control,
    writes: Writes,
    role: Viewer,
) -> Any:
    """Set tag values on a device, in the order given; a failed one ends the sequence. Refused
    (nothing written, a problem naming why) when writes are off, a tag is not writable or the
    value is out of its bounds or type, the device is not online, or the rate is exceeded."""
    outcomes = await writes.write(
        control.write_target(device_id),
        device_id,
        body.values,
        who=f"token:{request.state.caller}",
        path="page" if request.headers.get("x-gateway-page") else "rest",
        verify=body.verify,
        may_write=role in ("operator", "admin"),  # a viewer's attempt is audited too
    )
    results = tag_results(outcomes)
    if all(o.written for o in outcomes) and len(outcomes) == len(body.values):
        return WriteAnswer(device=device_id, results=results)
    failed = next(r for r in results if r.result != "written")
    # Refused before anything was sent (the value does not fit the tag's type): the request's
    # fault, 422; the device refused or did not answer: 502.
    status = 422 if failed.result == "refused" else 502
    problem = WriteFailed(
        title="Write refused" if status == 422 else "Write failed",
        status=status,
        detail=f"{device_id}.{failed.tag}: {failed.error}",
        errors=[FieldProblem(field=f"values.{failed.tag}", message=failed.error or failed.result)],
        results=results,
    )
    return JSONResponse(problem.model_dump(mode="json"), status_code=status, media_type=MEDIA_TYPE)


@routes.get(
    "/audit", response_model=AuditPage, dependencies=[KnownQuery("device", "limit", "before")]
)
async def audit(
    writes: Writes,
    _: Admin,
    device: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Entries older than this id")
    ] = None,
) -> AuditPage:
    """Every write attempt, newest first: who, how, the device and tag, the value asked for,
    what went on the wire, the value before and read back, the result and its reason."""
    found = await writes.audit.entries(limit, before, device)
    items = [{"id": row_id, **entry.public()} for row_id, entry in found]
    return AuditPage(items=items, next_before=found[-1][0] if len(found) == limit else None)
