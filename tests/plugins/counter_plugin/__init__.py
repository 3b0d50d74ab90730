"""A protocol plugin written against the gateway's public contracts only: a "device" whose
tags count up from ``start`` by their ``step`` every interval; ``fail_every`` makes every Nth
cycle fail (refused), to show that device state stays the runtime's business."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from pydantic import Field

from gateway.cycle import Cycle, Failure, FailureKind
from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.errors import ConfigProblem
from gateway.plugins import ConnectorFactory, PluginContext, groups_of_type
from gateway.protocols import Connector
from gateway.reading import bad_readings, good_readings
from gateway.schedule import PollScheduler, phase_of
from gateway.tags import TagBase


class CounterTag(TagBase):
    step: int = Field(default=1, ge=1)


class CounterGroup(GroupBase):
    tags: list[CounterTag] = Field(min_length=1)


class CounterProfile(ProfileBase):
    type: Literal["counter"]
    groups: list[CounterGroup] = Field(min_length=1)


class CounterDevice(DeviceBase):
    type: Literal["counter"]
    start: int = 0
    fail_every: int = Field(default=0, ge=0)
    groups: list[CounterGroup] | None = None


class CounterConnector:
    def __init__(self, device: CounterDevice, groups: Sequence[CounterGroup]) -> None:
        self.device = device
        self.groups = list(groups)
        self.polls = 0

    async def start(self) -> bool:
        return True

    async def cycles(self) -> AsyncIterator[Cycle]:
        loop = asyncio.get_running_loop()
        schedule = PollScheduler(
            [g.interval for g in self.groups],
            [phase_of(f"{self.device.id}/{g.name}", g.interval) for g in self.groups],
            loop.time(),
        )
        while True:
            index, due = schedule.next()
            await asyncio.sleep(max(0.0, due - loop.time()))
            group = self.groups[index]
            self.polls += 1
            now = time.time_ns()
            names = [tag.name for tag in group.tags]
            every = self.device.fail_every
            if every and self.polls % every == 0:
                # One of two requests refused: the device answers, so it is degraded.
                cycle = Cycle(bad_readings(self.device.id, names, "refused", now), now, requests=2)
                cycle.failures.append(Failure(FailureKind.REFUSED, "counter refused"))
            else:
                values = [self.device.start + self.polls * tag.step for tag in group.tags]
                cycle = Cycle(good_readings(self.device.id, names, values, now, now), now, 1)
            cycle.skipped = schedule.done(index, loop.time(), answered=True)
            yield cycle

    async def stop(self) -> None:
        pass


class CounterPlugin:
    type = "counter"
    device_model = CounterDevice
    profile_model = CounterProfile

    def check_groups(
        self, groups: Sequence[GroupBase], where: str, device: DeviceBase | None, context: str
    ) -> list[ConfigProblem]:
        problems = []
        for g, group in enumerate(groups):
            for t, tag in enumerate(group.tags):
                if tag.name.startswith("x"):
                    path = f"{where}.groups[{g}].tags[{t}].name"
                    problems.append(
                        ConfigProblem(path, f"counter tags never start with x{context}")
                    )
        return problems

    def connector_factory(self, context: PluginContext) -> ConnectorFactory:
        def build(device: DeviceBase, groups: Sequence[GroupBase]) -> Connector:
            assert isinstance(device, CounterDevice)
            return CounterConnector(device, groups_of_type(groups, CounterGroup, device.id))

        return build


PLUGIN = CounterPlugin()
