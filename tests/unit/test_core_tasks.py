"""No silent death: every core task that dies is logged, shown in /healthz's source
(``runtime.down``) and restarted; one that keeps dying stops the gateway with an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.routes.system import healthz
from gateway.config import GatewayConfig, parse_config
from gateway.history import History, HistoryConfig
from gateway.local_store import LocalStore
from gateway.outbox import Outbox, OutboxConfig
from gateway.registry import DATABASE_FILE
from gateway.runtime import CoreTaskFailed, Runtime
from gateway.status import DeviceStatus
from tests.support.processes import async_wait_until
from tests.unit.fakes import FakeSink
from tests.unit.test_runtime import Factory


def config(tmp_path: Path, outbox: bool = False) -> GatewayConfig:
    return parse_config(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path)},
            "runtime": {
                "retry_min": 0.01,
                "retry_max": 0.02,
                "status_interval": 0.05,
                "outbox": {"enabled": outbox},
            },
            "devices": [
                {
                    "id": "d",
                    "type": "modbus",
                    "host": "h",
                    "groups": [{"tags": [{"name": "t", "address": 0}]}],
                }
            ],
        }
    )


class Once:
    """Wraps a method so that its first ``times`` calls raise an unexpected error."""

    def __init__(self, method: Callable[..., Any], times: int = 1) -> None:
        self.method = method
        self.times = times

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.times:
            self.times -= 1
            raise RuntimeError("injected fault")
        return self.method(*args, **kwargs)


class FailingPublisher(FakeSink):
    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        if self.times:
            self.times -= 1
            raise RuntimeError("injected fault")
        await super().publish_device_statuses(statuses)


async def run_until(runtime: Runtime, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await async_wait_until(done, 10)
    finally:
        stop.set()
        await task


@pytest.mark.parametrize("core", ["sink:fake", "status:fake", "outbox", "local:history"])
async def test_each_core_task_is_restarted_after_it_dies(
    core: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingPublisher(1 if core == "status:fake" else 0)
    history = History(tmp_path / "h.db", HistoryConfig(min_interval=0, flush_interval=0.05))
    store = LocalStore(history)
    runtime = Runtime(
        config(tmp_path, outbox=core == "outbox"), [sink, store], {"modbus": Factory()}
    )
    if core == "sink:fake":
        sink.failures = [RuntimeError("injected fault")]
    elif core == "outbox":
        assert runtime.outbox is not None
        runtime.outbox.persist = Once(runtime.outbox.persist)  # type: ignore[method-assign]
    elif core == "local:history":
        history.flush = Once(history.flush)  # type: ignore[method-assign]

    def restarted() -> bool:
        return runtime.restarts.get(core, 0) == 1 and len(sink.written) >= 20

    with caplog.at_level(logging.ERROR, logger="gateway.runtime"):
        await run_until(runtime, restarted)
    assert f"core task {core} died; restarting it: RuntimeError: injected fault" in caplog.text
    assert "Traceback" in caplog.text or caplog.records[0].exc_info
    assert runtime.down == {}
    if core == "local:history":
        assert history.written > 0  # the restarted task flushed what was pending


async def test_a_core_task_that_keeps_dying_stops_the_gateway(tmp_path: Path) -> None:
    sink = FakeSink(failures=[RuntimeError("disk on fire")] * 100)
    runtime = Runtime(config(tmp_path), [sink], {"modbus": Factory()})
    with pytest.raises(CoreTaskFailed, match="core task sink:fake keeps failing"):
        async with asyncio.timeout(10):
            await runtime.run(asyncio.Event())
    assert sink.stopped


async def test_healthz_is_503_while_a_core_task_is_down(tmp_path: Path) -> None:
    runtime = Runtime(config(tmp_path), [FakeSink()], {"modbus": Factory()})
    assert (await healthz(runtime)).status_code == 200
    runtime.down["outbox"] = "OperationalError: disk I/O error"
    answer = await healthz(runtime)
    assert answer.status_code == 503
    assert orjson.loads(answer.body) == {
        "status": "failing",
        "tasks": {"outbox": "OperationalError: disk I/O error"},
    }


async def test_giving_up_stores_what_was_accepted_first(tmp_path: Path) -> None:
    """The outbox's writer keeps dying: the gateway gives up, but what the devices yielded
    meanwhile is stored before the exit, for the next start to deliver."""
    runtime = Runtime(config(tmp_path, outbox=True), [FakeSink()], {"modbus": Factory()})

    async def dying() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("injected fault")

    runtime._write_intake = dying  # type: ignore[method-assign]
    with pytest.raises(CoreTaskFailed, match="core task outbox:writer keeps failing"):
        async with asyncio.timeout(10):
            await runtime.run(asyncio.Event())
    accepted = sum(device.status.values for device in runtime.devices.values())
    assert accepted > 0
    outbox = Outbox(tmp_path / DATABASE_FILE, ["fake"], OutboxConfig())
    try:
        assert outbox.pending_readings["fake"] == accepted
    finally:
        outbox.close()
