"""RFC 7807 problem details for every error, naming the bad field where there is one."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from gateway.config import format_location
from gateway.control import Conflict, NotFound
from gateway.errors import ConfigError
from gateway.writeback import WriteRefused

__all__ = [
    "ERRORS",
    "MEDIA_TYPE",
    "FieldProblem",
    "MalformedBody",
    "Problem",
    "install_problem_handlers",
    "problem",
]

MEDIA_TYPE = "application/problem+json"


class MalformedBody(Exception):
    """A body that cannot be read at all (not JSON, not UTF-8, wrong media type): 400 or 415,
    as opposed to a readable body with bad fields (422)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


class FieldProblem(BaseModel):
    field: str
    """Path of the bad field in the request body, e.g. ``groups[0].tags[2].data_type``."""
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = []


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in {
        400: "The body cannot be read: not JSON (or not CSV), not UTF-8",
        401: "No or unknown token",
        403: "The token's role may not do this",
        404: "No such device, profile or tag",
        409: "Id taken, or defined by the configuration file",
        413: "The body is larger than api.max_body_kb",
        422: "Invalid body or query: every bad field is named",
    }.items()
}
"""The problems every API route may answer (its OpenAPI document says problem+json)."""


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=errors or [])
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def _field(loc: tuple[Any, ...]) -> str:
    # FastAPI prefixes the place of the value: body, query, path, header.
    where, rest = (loc[0], loc[1:]) if loc and loc[0] in ("body", "query", "path") else ("", loc)
    path = format_location(tuple(rest), union_at_root=where == "body")
    if where in ("query", "path"):
        return f"{where}.{path}" if path else where
    return path or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = [e for e in exc.errors() if e["type"] == "json_invalid"]
        if malformed:
            detail = f"the body is not JSON: {malformed[0]['ctx'].get('error', 'invalid')}"
            return problem(400, "Malformed body", detail)
        errors = [
            FieldProblem(
                field=_field(tuple(e["loc"])), message=e["msg"].removeprefix("Value error, ")
            )
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem(422, "Invalid request", detail, errors)

    @app.exception_handler(ConfigError)
    async def invalid_config(request: Request, exc: ConfigError) -> JSONResponse:
        errors = [FieldProblem(field=p.path or "body", message=p.message) for p in exc.problems]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem(422, "Invalid configuration", detail, errors)

    @app.exception_handler(MalformedBody)
    async def malformed(request: Request, exc: MalformedBody) -> JSONResponse:
        return problem(exc.status, _title(exc.status), str(exc))

    @app.exception_handler(WriteRefused)
    async def write_refused(request: Request, exc: WriteRefused) -> JSONResponse:
        errors = (
            [] if exc.tag is None else [FieldProblem(field=f"values.{exc.tag}", message=exc.reason)]
        )
        title = "Write refused" if exc.status != 404 else "Not found"
        headers = {"Retry-After": "60"} if exc.status == 429 else None
        return problem(exc.status, title, exc.reason, errors, headers)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, "Conflict", str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return problem(
            exc.status_code, _title(exc.status_code), str(exc.detail), headers=exc.headers
        )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
