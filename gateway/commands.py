"""Commands that arrive through a sink (MQTT ``{prefix}/{gateway}/{device}/set``): the same
body, checks, audit and answers as ``POST /api/v1/devices/{id}/write``."""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from gateway.control import ControlPlane
from gateway.protocols import Command, CommandHandler
from gateway.writeback import WriteRefused, WriteRequest, WriteService, tag_results

__all__ = ["command_handler"]


def command_handler(control: ControlPlane, writes: WriteService) -> CommandHandler:
    async def handle(command: Command) -> bytes:
        try:
            request = WriteRequest.model_validate_json(command.payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            return _answer(command.device, False, 400, f"not a write request: {problems}")
        try:
            outcomes = await writes.write(
                control.write_target(command.device),
                command.device,
                request.values,
                who=command.origin,
                path="mqtt",
                verify=request.verify,
            )
        except WriteRefused as refused:
            return _answer(command.device, False, refused.status, refused.reason, tag=refused.tag)
        results = [result.model_dump(mode="json") for result in tag_results(outcomes)]
        ok = len(outcomes) == len(request.values) and all(o.written for o in outcomes)
        error = None if ok else next(r["error"] for r in results if r["result"] != "written")
        return _answer(command.device, ok, 200 if ok else 502, error, results=results)

    return handle


def _answer(
    device: str,
    ok: bool,
    status: int,
    error: str | None,
    tag: str | None = None,
    results: list[dict[str, object]] | None = None,
) -> bytes:
    body: dict[str, object] = {"device": device, "ok": ok, "status": status}
    if error is not None:
        body["error"] = error
    if tag is not None:
        body["tag"] = tag
    body["results"] = results or []
    return orjson.dumps(body)
