"""Write-back: setting values on devices, safely. Off by default; per tag an allowlist
(``writable``) with bounds (``min``/``max``) or a set of ``allowed`` values; never queued for a
device that is not connected; rate-limited per device; bounded in time; every attempt audited.

The REST route and the MQTT command topic both come here; the connector (a ``Writer``) puts the
values on the wire, in turn with its polls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.audit import Audit, AuditEntry
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.protocols import HandlesConditions, TagWrite, WriteOutcome, Writer
from gateway.reading import Value
from gateway.status import DeviceState
from gateway.tags import Settable, TagBase

__all__ = [
    "ConditionAction",
    "TagResult",
    "WriteRefused",
    "WriteRequest",
    "WriteService",
    "WritesConfig",
    "check_value",
    "result_of",
    "tag_results",
]

log = logging.getLogger(__name__)

WritePath = Literal["rest", "mqtt", "page"]
ConditionAction = Literal["acknowledge", "confirm"]


class WritesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Allow setting values on devices at all")
    mqtt: bool = Field(
        default=False,
        description="Also take commands over MQTT: {prefix}/{gw}/{dev}/set and Sparkplug DCMD",
    )
    verify: bool = Field(default=True, description="Read each written value back (default)")
    timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds for one request")
    per_minute: int = Field(default=60, ge=1, le=6000, description="Writes per device")
    audit_rows: int = Field(default=100_000, ge=100, le=10_000_000, description="Audit kept")

    @model_validator(mode="after")
    def _mqtt_needs_writes(self) -> WritesConfig:
        if self.mqtt and not self.enabled:
            raise ValueError("mqtt: true takes commands only with enabled: true")
        return self


class WriteRequest(BaseModel):
    values: dict[str, bool | Settable | float | str] = Field(
        min_length=1,
        max_length=100,
        description="Tag → value in engineering units, applied in this order",
        examples=[{"setpoint": 42.5, "run": True}],
    )
    verify: bool | None = Field(
        default=None, description="Read each value back (default: writes.verify)"
    )


class TagResult(BaseModel):
    tag: str
    result: str = Field(
        description="written; refused (nothing sent: the value does not fit); failed (the"
        " device refused it); unknown (no answer: it may have been applied)"
    )
    error: str | None = None
    method: str | None = Field(default=None, description="FC5, FC6, FC16, FC22, opcua...")
    raw: str | None = Field(default=None, description="What went on the wire")
    before: Any = None
    read_back: Any = None


class WriteRefused(GatewayError):
    """Not attempted: the policy, the device's state or the rate said no."""

    def __init__(self, status: int, reason: str, tag: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.tag = tag


def check_value(tag: TagBase, value: object) -> Value:
    """The value if the tag's policy allows it; else ValueError with the reason."""
    if not tag.writable:
        raise ValueError(f"tag {tag.name!r} is not writable (writable: true in its config)")
    if value is None or isinstance(value, list | dict):
        raise ValueError(f"{value!r} is not a single value")
    # True == 1 in Python: a bool never stands in for a number, nor a number for a bool.
    if tag.allowed is not None and not any(
        isinstance(value, bool) == isinstance(a, bool) and value == a for a in tag.allowed
    ):
        raise ValueError(f"{value!r} is not one of the allowed values {tag.allowed}")
    if tag.min is not None or tag.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if tag.min is not None and value < tag.min:
            raise ValueError(f"{value} is below the minimum {tag.min:g}")
        if tag.max is not None and value > tag.max:
            raise ValueError(f"{value} is above the maximum {tag.max:g}")
    assert isinstance(value, bool | int | float | str)
    return value


@dataclass(frozen=True, slots=True)
class Target:
    """What the service needs of a device: its tags, its state and its connector."""

    device: str
    tags: Mapping[str, TagBase]
    state: DeviceState
    connector: object


class WriteService:
    def __init__(self, config: WritesConfig, audit: Audit) -> None:
        self.config = config
        self.audit = audit
        self._recent: dict[str, deque[float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.counts: Counter[str] = Counter()
        """Attempts by result (written, refused, failed, unknown), for /metrics."""

    async def write(
        self,
        target: Target | None,
        device_id: str,
        values: Mapping[str, object],
        who: str,
        path: WritePath,
        verify: bool | None = None,
        may_write: bool = True,
    ) -> list[WriteOutcome]:
        """Apply ``values`` (tag → engineering value) in the order given; ``may_write`` False
        (a read-only caller) is refused and audited like any other refusal. Raises WriteRefused
        (nothing written) when any is refused; otherwise the outcome of each attempted write
        (a failed one ends the sequence: the rest are not attempted). Every tag is audited."""
        started = time.time()
        try:
            if not may_write:
                raise WriteRefused(403, "this token may only read: writing needs an operator token")
            writer, writes = self._admit(target, device_id, values)
        except WriteRefused as refused:
            await self._audit_refusal(device_id, values, who, path, refused, started)
            raise
        lock = self._locks.setdefault(device_id, asyncio.Lock())
        outcomes: list[WriteOutcome] = []
        async with lock:  # one sequence at a time per device, in arrival order
            clock = time.perf_counter()
            try:
                async with asyncio.timeout(self.config.timeout * (2 + len(writes))):
                    outcomes = await writer.write(writes, self._verify(verify))
            except TimeoutError:
                done = {o.tag for o in outcomes}
                pending = next(w for w in writes if w.tag.name not in done)
                outcomes.append(
                    WriteOutcome(
                        pending.tag.name,
                        written=False,
                        applied=None,
                        error=f"no answer within {self.config.timeout:g} s per request: it may"
                        " have been applied; not retried",
                    )
                )
            duration_ms = (time.perf_counter() - clock) * 1000
        await self._audit_outcomes(device_id, writes, outcomes, who, path, started, duration_ms)
        return outcomes

    async def answer_condition(
        self,
        target: Target | None,
        device_id: str,
        event: Event,
        action: ConditionAction,
        comment: str,
        who: str,
        path: WritePath,
        may_write: bool = True,
    ) -> WriteOutcome:
        """Acknowledge or confirm an alarm (an OPC UA condition) on the device: the same
        policy as a write (writes on, an operator, the device online, the rate per device)
        and one audit entry, whose tag is the condition and whose value the action."""
        started = time.time()
        requested = {"action": action, "event_id": event.event_id, "comment": comment}
        condition = event.condition_id
        try:
            if not may_write:
                raise WriteRefused(403, f"this token may only read: to {action} needs an operator")
            if condition is None:
                raise WriteRefused(422, f"event {event.event_id} is not of a condition (an alarm)")
            handler = self._admit_condition(target, device_id)
        except WriteRefused as refused:
            entry = AuditEntry(
                int(started * 1000), who, path, device_id, condition, requested, "refused",
                refused.reason,
            )  # fmt: skip
            self.counts["refused"] += 1
            await self.audit.record([entry])
            raise
        assert condition is not None
        lock = self._locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            clock = time.perf_counter()
            try:
                async with asyncio.timeout(self.config.timeout * 2):
                    outcome = await handler.answer_condition(
                        condition, event.event_id, action, comment
                    )
            except TimeoutError:
                outcome = WriteOutcome(
                    condition,
                    written=False,
                    applied=None,
                    error=f"no answer within {self.config.timeout * 2:g} s: it may have been"
                    " applied; not retried",
                )
            duration_ms = (time.perf_counter() - clock) * 1000
        result = result_of(outcome)
        self.counts[result] += 1
        entry = AuditEntry(
            int(started * 1000),
            who,
            path,
            device_id,
            condition,
            requested,
            result,
            outcome.error,
            raw=event.event_id,
            method=outcome.method,
            duration_ms=duration_ms,
        )
        await self.audit.record([entry])
        return outcome

    def _admit_condition(self, target: Target | None, device_id: str) -> HandlesConditions:
        target = self._known(target, device_id)
        if not isinstance(target.connector, HandlesConditions):
            raise WriteRefused(422, f"device {device_id!r}: its protocol has no alarms to answer")
        self._online_and_in_rate(target, device_id)
        return target.connector

    def _known(self, target: Target | None, device_id: str) -> Target:
        """What every write and answer needs first: writes on, the device known."""
        if not self.config.enabled:
            raise WriteRefused(403, "writes are off in this gateway (writes.enabled: false)")
        if target is None:
            raise WriteRefused(404, f"no device {device_id!r}")
        return target

    def _online_and_in_rate(self, target: Target, device_id: str) -> None:
        """And last: the device online (nothing is queued: a set point must not arrive late),
        and the rate per device not exceeded."""
        if target.state not in (DeviceState.ONLINE, DeviceState.DEGRADED):
            raise WriteRefused(
                409,
                f"device {device_id!r} is {target.state.value}: a write is never queued (a set"
                " point must not arrive late); try again when it is online",
            )
        self._take_turn(device_id)

    def _verify(self, verify: bool | None) -> bool:
        return self.config.verify if verify is None else verify

    def _admit(
        self, target: Target | None, device_id: str, values: Mapping[str, object]
    ) -> tuple[Writer, list[TagWrite]]:
        target = self._known(target, device_id)
        if not values:
            raise WriteRefused(422, "no values to write")
        writes = []
        for name, value in values.items():
            tag = target.tags.get(name)
            if tag is None:
                raise WriteRefused(422, f"device {device_id!r} has no tag {name!r}", name)
            try:
                writes.append(TagWrite(tag, check_value(tag, value)))
            except ValueError as exc:
                raise WriteRefused(422, str(exc), name) from None
        if not isinstance(target.connector, Writer):
            raise WriteRefused(422, f"device {device_id!r}: its protocol cannot write")
        self._online_and_in_rate(target, device_id)
        return target.connector, writes

    def _take_turn(self, device_id: str) -> None:
        now = time.monotonic()
        recent = self._recent.setdefault(device_id, deque())
        while recent and recent[0] < now - 60:
            recent.popleft()
        if len(recent) >= self.config.per_minute:
            raise WriteRefused(
                429, f"device {device_id!r}: at most {self.config.per_minute} writes per minute"
            )
        recent.append(now)

    async def _audit_refusal(
        self,
        device_id: str,
        values: Mapping[str, object],
        who: str,
        path: WritePath,
        refused: WriteRefused,
        started: float,
    ) -> None:
        ts = int(started * 1000)
        entries = []
        tags: list[str | None] = [*values] or [None]
        for tag in tags:
            reason = refused.reason
            if refused.tag not in (None, tag):
                reason = f"not attempted: {refused.tag} was refused ({refused.reason})"
            requested = None if tag is None else values[tag]
            entries.append(AuditEntry(ts, who, path, device_id, tag, requested, "refused", reason))
        self.counts["refused"] += len(entries)
        await self.audit.record(entries)

    async def _audit_outcomes(
        self,
        device_id: str,
        writes: list[TagWrite],
        outcomes: list[WriteOutcome],
        who: str,
        path: WritePath,
        started: float,
        duration_ms: float,
    ) -> None:
        ts = int(started * 1000)
        by_tag = {o.tag: o for o in outcomes}
        entries = []
        for write in writes:
            outcome = by_tag.get(write.tag.name)
            if outcome is None:
                result, reason = "not attempted", "an earlier write of the sequence failed"
                entry = AuditEntry(ts, who, path, device_id, write.tag.name, write.value, result,
                                   reason)  # fmt: skip
            else:
                result = result_of(outcome)
                entry = AuditEntry(
                    ts, who, path, device_id, outcome.tag, write.value, result, outcome.error,
                    outcome.raw, outcome.method, outcome.before, outcome.read_back, duration_ms,
                )  # fmt: skip
            self.counts[result] += 1
            entries.append(entry)
        await self.audit.record(entries)


def tag_results(outcomes: list[WriteOutcome]) -> list[TagResult]:
    """The outcomes as answered to the caller (the API and MQTT answer alike)."""
    return [
        TagResult(
            tag=o.tag, result=result_of(o), error=o.error, method=o.method, raw=o.raw,
            before=o.before, read_back=o.read_back,
        )
        for o in outcomes
    ]  # fmt: skip


def result_of(outcome: WriteOutcome) -> str:
    """written; refused (nothing sent: the value does not fit); failed (the device refused);
    unknown (no answer: it may have been applied)."""
    if outcome.written:
        return "written"
    if outcome.applied is None:
        return "unknown"
    return "failed" if outcome.method is not None else "refused"
