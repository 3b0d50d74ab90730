"""The runtime with fake connectors and sinks: isolation, recovery, statuses, orderly stop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from gateway.config import DeviceConfig, GatewayConfig, parse_config
from gateway.cycle import Cycle
from gateway.devices import GroupBase
from gateway.protocols import Connector
from gateway.runtime import Runtime, _StatusChannel
from gateway.status import DeviceStatus
from tests.support.processes import async_wait_until
from tests.unit.fakes import FakeConnector, FakeSink, cycle


def config(*device_ids: str, **runtime: Any) -> GatewayConfig:
    tags = [{"name": "t0", "address": 0}]
    return parse_config(
        {
            "gateway": {"id": "gw"},
            # No outbox here (these tests have no data directory); test_outbox covers it.
            "runtime": {
                "reconnect_min": 0.01,
                "reconnect_max": 0.02,
                "outbox": {"enabled": False},
                **runtime,
            },
            "devices": [
                {
                    "id": d,
                    "type": "modbus",
                    "host": "127.0.0.1",
                    "groups": [{"tags": tags}],
                    "labels": {"line": "l1"},
                }
                for d in device_ids
            ],
        }
    )


class Factory:
    def __init__(self, **per_device: dict[str, int]) -> None:
        self.per_device = per_device
        self.connectors: dict[str, FakeConnector] = {}

    def __call__(self, device: DeviceConfig, groups: Sequence[GroupBase]) -> Connector:
        connector = FakeConnector(device.id, **self.per_device.get(device.id, {}))
        self.connectors[device.id] = connector
        return connector


async def test_a_failing_device_never_stalls_the_others_and_recovers() -> None:
    sink = FakeSink()
    factory = Factory(flaky={"fail_starts": 3})
    runtime = Runtime(config("good", "flaky"), [sink], {"modbus": factory})
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await async_wait_until(lambda: sum(b.device == "good" for b in sink.written) >= 20)
    await async_wait_until(lambda: any(b.device == "flaky" for b in sink.written))
    assert factory.connectors["flaky"].starts == 4
    assert ("flaky", "offline") in sink.statuses
    flaky = runtime.devices["flaky"].status
    assert flaky.state.value == "online"
    stop.set()
    await task
    # Orderly stop: connectors stopped, sinks stopped, every device published offline last.
    assert all(c.stops >= 1 for c in factory.connectors.values())
    assert sink.started and sink.stopped
    assert sink.statuses[-2:] == [("good", "offline"), ("flaky", "offline")]


async def test_a_lost_connection_restarts_the_connector() -> None:
    sink = FakeSink()
    factory = Factory(dev={"cycles": 3})
    runtime = Runtime(config("dev"), [sink], {"modbus": factory})
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await async_wait_until(
        lambda: "dev" in factory.connectors and factory.connectors["dev"].starts >= 3
    )
    stop.set()
    await task
    assert len([b for b in sink.written if b.device == "dev"]) >= 6
    assert runtime.devices["dev"].status.last_error == "gateway stopped"


async def test_batches_carry_the_device_labels_and_are_flushed_at_stop() -> None:
    sink = FakeSink()
    runtime = Runtime(config("dev"), [sink], {"modbus": Factory()})
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await async_wait_until(lambda: len(sink.written) >= 1)
    sink.gate.clear()  # the sink stalls: batches pile up in the runtime's buffer
    await async_wait_until(lambda: runtime.buffers[0].depth >= 5)
    stop.set()
    await asyncio.sleep(0.05)
    sink.gate.set()  # within the shutdown timeout: everything held is written
    await task
    assert runtime.buffers[0].depth == 0
    assert all(dict(b.labels) == {"line": "l1"} for b in sink.written)
    cycles = [b.cycle_ns for b in sink.written]
    assert cycles == sorted(cycles) and cycles == list(range(len(cycles)))


async def test_devices_can_be_added_and_removed_while_running() -> None:
    sink = FakeSink()
    cfg = config("a", "b")
    runtime = Runtime(
        cfg.model_copy(update={"devices": cfg.devices[:1]}), [sink], {"modbus": Factory()}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await runtime.started.wait()
    runtime.add_device(cfg.devices[1])
    await async_wait_until(lambda: any(b.device == "b" for b in sink.written))
    await runtime.remove_device("a")
    assert set(runtime.devices) == {"b"}
    stop.set()
    await task


class CancelSwallowingConnector(FakeConnector):
    """Swallows the first cancellation, as ``asyncio.wait_for`` does in Python 3.11 (inside
    pymodbus and asyncua) when its result arrives together with the cancellation."""

    async def cycles(self) -> AsyncIterator[Cycle]:
        swallowed = False
        for number in itertools.count():
            try:
                await asyncio.sleep(0.001)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True
            yield cycle(self.device, [float(number)], cycle_ns=number)


async def test_a_device_whose_connector_swallowed_the_cancellation_still_stops() -> None:
    sink = FakeSink()
    runtime = Runtime(
        config("dev"), [sink], {"modbus": lambda d, g: CancelSwallowingConnector(d.id)}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await async_wait_until(lambda: len(sink.written) >= 3)
    stop.set()
    async with asyncio.timeout(5):
        await task
    assert sink.stopped


class SlowPublisher(FakeSink):
    """A status publisher whose every call takes a broker round trip."""

    def __init__(self, round_trip: float) -> None:
        super().__init__()
        self.round_trip = round_trip
        self.calls: list[tuple[float, list[str]]] = []

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        await asyncio.sleep(self.round_trip)
        self.calls.append((asyncio.get_running_loop().time(), [s.device for s in statuses]))
        await super().publish_device_statuses(statuses)


async def test_every_status_is_refreshed_on_schedule_in_one_round_trip() -> None:
    ids = [f"d{i:03}" for i in range(200)]
    sink = SlowPublisher(round_trip=0.02)
    # "flaky" loses its connection after every cycle: online, offline, online... meanwhile.
    factory = Factory(flaky={"cycles": 1})
    runtime = Runtime(config(*ids, "flaky", status_interval=0.5), [sink], {"modbus": factory})
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await async_wait_until(lambda: loop.time() - begin > 2.6)
    stop.set()
    await task
    refreshes = [at for at, devices in sink.calls if len(devices) == len(ids) + 1]
    # Every device at once, every 0.5 s, though "flaky" changes all the time; 200 devices at
    # 20 ms per round trip would take 4 s one by one.
    assert len(refreshes) >= 4
    assert max(b - a for a, b in itertools.pairwise(refreshes)) < 0.75
    assert any(devices == ["flaky"] for _, devices in sink.calls)


async def test_the_status_publisher_stops_when_woken_and_cancelled_at_once() -> None:
    """Python 3.11's ``asyncio.wait_for`` dropped a cancellation that came with its result:
    the status publisher, woken by the devices going offline at shutdown in the same loop pass
    as its cancellation, then published on and the gateway's stop waited forever (seen as a
    SIGKILL after 15 s in tests/integration/test_control_plane.py)."""
    sink = FakeSink()
    runtime = Runtime(config("dev", status_interval=60), [sink], {"modbus": Factory()})
    channel = _StatusChannel(sink, sink.name)
    publishing = asyncio.create_task(runtime._publish_statuses(channel))
    await asyncio.sleep(0.01)  # waiting for its wake-up
    channel.wakeup.set()
    publishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await publishing
