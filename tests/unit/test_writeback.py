"""The write service's rules with a fake connector: policy, state, rate, timeout, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.audit import Audit
from gateway.protocols import TagWrite, WriteOutcome
from gateway.status import DeviceState
from gateway.tags import TagBase
from gateway.writeback import Target, WriteRefused, WritesConfig, WriteService, check_value

SETPOINT = TagBase(name="setpoint", writable=True, min=0, max=100)
RUN = TagBase(name="run", writable=True, allowed=[True, False])
SERIAL = TagBase(name="serial")


class FakeWriter:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.seen: list[list[TagWrite]] = []

    async def write(self, writes: Sequence[TagWrite], verify: bool) -> list[WriteOutcome]:
        self.seen.append(list(writes))
        if self.hang:
            await asyncio.Event().wait()
        return [
            WriteOutcome(w.tag.name, True, applied=True, method="fake", read_back=w.value)
            for w in writes
        ]


def target(connector: object, state: DeviceState = DeviceState.ONLINE) -> Target:
    return Target("d", {t.name: t for t in (SETPOINT, RUN, SERIAL)}, state, connector)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[WriteService]:
    audit = Audit(tmp_path / "audit.db", 100)
    yield WriteService(WritesConfig(enabled=True, per_minute=3, timeout=0.05), audit)
    audit.close()


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        (SERIAL, 1, "not writable"),
        (SETPOINT, -1, "below the minimum 0"),
        (SETPOINT, 100.5, "above the maximum 100"),
        (SETPOINT, True, "not a number"),
        (SETPOINT, float("inf"), "not a finite number"),
        (RUN, 1, "not one of the allowed values"),
        (SETPOINT, [1], "not a single value"),
        (SETPOINT, None, "not a single value"),
    ],
)
def test_the_policy_names_why(tag: TagBase, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_value(tag, value)


def test_limits_need_writable_and_make_sense() -> None:
    with pytest.raises(ValueError, match="need writable: true"):
        TagBase(name="x", max=3)
    with pytest.raises(ValueError, match="min 5 is above max 3"):
        TagBase(name="x", writable=True, min=5, max=3)
    with pytest.raises(ValueError, match="either allowed or min/max"):
        TagBase(name="x", writable=True, min=1, allowed=[1])


async def test_writes_off_offline_and_rate_are_refused_and_audited(
    service: WriteService, tmp_path: Path
) -> None:
    writer = FakeWriter()
    off = WriteService(WritesConfig(), service.audit)
    with pytest.raises(WriteRefused, match=r"writes\.enabled: false") as caught:
        await off.write(target(writer), "d", {"setpoint": 1}, "t", "rest")
    assert caught.value.status == 403
    with pytest.raises(WriteRefused, match="is offline: a write is never queued") as caught:
        await service.write(target(writer, DeviceState.OFFLINE), "d", {"setpoint": 1}, "t", "rest")
    assert caught.value.status == 409
    for _ in range(3):
        await service.write(target(writer), "d", {"setpoint": 1}, "t", "rest")
    with pytest.raises(WriteRefused, match="at most 3 writes per minute") as caught:
        await service.write(target(writer), "d", {"setpoint": 1}, "t", "rest")
    assert caught.value.status == 429
    assert len(writer.seen) == 3
    results = [e.result for _, e in await service.audit.entries(10)]
    assert results == ["refused", "written", "written", "written", "refused", "refused"]
    assert service.counts == {"written": 3, "refused": 2}  # the first refusal was off's


async def test_a_write_without_an_answer_is_unknown_and_not_retried(service: WriteService) -> None:
    writer = FakeWriter(hang=True)
    [outcome] = await service.write(target(writer), "d", {"setpoint": 5, "run": True}, "t", "mqtt")
    assert outcome.tag == "setpoint" and outcome.applied is None
    assert "may have been applied; not retried" in (outcome.error or "")
    assert len(writer.seen) == 1
    entries = [e for _, e in await service.audit.entries(10)]
    assert [(e.tag, e.result) for e in entries] == [
        ("run", "not attempted"),
        ("setpoint", "unknown"),
    ]


async def test_the_audit_keeps_the_newest_rows(tmp_path: Path) -> None:
    audit = Audit(tmp_path / "a.db", 100)
    service = WriteService(WritesConfig(enabled=True, per_minute=1000), audit)
    for n in range(130):
        await service.write(target(FakeWriter()), "d", {"setpoint": n % 100}, "t", "rest")
    kept = await audit.entries(1000)
    assert len(kept) == 100 and kept[0][1].requested == 129 % 100
    audit.close()
