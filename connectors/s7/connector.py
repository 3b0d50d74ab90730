"""The S7 connector: polls a PLC's groups on schedule, coalesced into multi-variable reads, and
sets values through the write capability."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

from connectors.s7.codec import BlockDecoder, encode_value
from connectors.s7.config import S7DataType, S7DeviceConfig, S7Group, S7Tag
from connectors.s7.link import Refused, S7Link
from connectors.s7.planner import (
    Block,
    Item,
    ReadRequest,
    make_blocks,
    pack_requests,
    payload_limit,
)
from gateway.cycle import Cycle, Failure, FailureKind
from gateway.errors import ConnectorError
from gateway.protocols import TagWrite, WriteOutcome
from gateway.reading import Value, bad_readings, good_readings
from gateway.schedule import PollScheduler, phase_of

__all__ = ["S7Connector"]

log = logging.getLogger(__name__)


class _GroupPlan:
    """A group's blocks (kept across reconnects, with the splits the PLC forced) and the
    requests they are packed into for the current connection's PDU."""

    def __init__(self, group: S7Group) -> None:
        self.group = group
        self.tags = group.tags
        self.items = [
            Item(t.location.area, t.location.db, t.location.byte, t.size, i)
            for i, t in enumerate(group.tags)
        ]
        self.blocks: list[Block] = []
        self.decoders: list[BlockDecoder] = []
        self.requests: list[ReadRequest] = []

    def plan(self, link: S7Link) -> None:
        device = link.device
        if not self.blocks:
            self.blocks = make_blocks(self.items, device.max_gap, payload_limit(link.pdu))
        self.decoders = [
            BlockDecoder(b.start, [(self.tags[i.tag], i.start) for i in b.items])
            for b in self.blocks
        ]
        self.requests = pack_requests(self.blocks, link.pdu, device.max_items)

    def split(self, index: int) -> None:
        """Read a refused block's items one by one from now on."""
        block = self.blocks[index]
        self.blocks[index : index + 1] = [
            Block(i.area, i.db, i.start, i.size, [i]) for i in block.items
        ]


class S7Connector:
    """One S7 PLC on its own connection."""

    def __init__(self, device: S7DeviceConfig, groups: Sequence[S7Group]) -> None:
        self.device = device
        self._link = S7Link(device)
        self._plans = [_GroupPlan(group) for group in groups]

    async def start(self) -> bool:
        await self._link.connect()
        for plan in self._plans:
            plan.plan(self._link)
        return True

    async def stop(self) -> None:
        await self._link.close()

    async def cycles(self) -> AsyncIterator[Cycle]:
        loop = asyncio.get_running_loop()
        plans = self._plans
        schedule = PollScheduler(
            [plan.group.interval for plan in plans],
            [phase_of(f"{self.device.id}/{p.group.name}", p.group.interval) for p in plans],
            loop.time(),
        )
        while True:
            index, due = schedule.next()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            started = loop.time()
            async with self._link.lock:
                cycle = await self._poll(plans[index])
            finished = loop.time()
            cycle.duration_s = finished - started
            cycle.skipped = schedule.done(index, finished, True)
            yield cycle
            del cycle  # not held through the wait for the next poll (see gateway/cycle.py)

    async def _poll(self, plan: _GroupPlan) -> Cycle:
        cycle = Cycle([], time.time_ns())
        results = await self._read(plan, cycle)
        refused = [
            i for i, r in results.items() if isinstance(r, str) and len(plan.blocks[i].items) > 1
        ]
        if refused:
            for index in sorted(refused, reverse=True):
                block = plan.blocks[index]
                log.warning(
                    "%s: %s bytes %d..%d refused as a whole (%s); reading its %d tags one by one"
                    " from now on",
                    self.device.id,
                    _area_name(block),
                    block.start,
                    block.end - 1,
                    results[index],
                    len(block.items),
                )
                plan.split(index)
            plan.plan(self._link)
            cycle.failures.clear()
            cycle.requests = 0
            results = await self._read(plan, cycle)
        device, readings = self.device.id, cycle.readings
        for index, block in enumerate(plan.blocks):
            result = results[index]
            names = [plan.tags[item.tag].name for item in block.items]
            if isinstance(result, str):
                readings += bad_readings(device, names, result, cycle.time_ns)
                continue
            values = plan.decoders[index].decode(result)
            readings += good_readings(device, names, values, cycle.time_ns, time.time_ns())
        return cycle

    async def _read(self, plan: _GroupPlan, cycle: Cycle) -> dict[int, bytes | str]:
        """Every block's bytes, or why it could not be read. A request with a refused or
        malformed variable is one failure of the cycle (the first reason)."""
        buffers = {i: bytearray(b.size) for i, b in enumerate(plan.blocks)}
        failed: dict[int, str] = {}
        for request in plan.requests:
            cycle.requests += 1
            variables = [
                (b.area, b.db, b.start + p.offset, p.length)
                for p in request.parts
                for b in (plan.blocks[p.block],)
            ]
            try:
                answers: Sequence[bytes | Refused] = await self._link.read(variables)
            except Refused as exc:
                answers = [exc] * len(variables)
            failure: Failure | None = None
            for part, answer in zip(request.parts, answers, strict=True):
                block = plan.blocks[part.block]
                where = f"{_area_name(block)} {block.start + part.offset}+{part.length}"
                if isinstance(answer, Refused):
                    reason, kind = f"{answer} reading {where}", FailureKind.REFUSED
                elif len(answer) != part.length:
                    reason = f"{len(answer)} bytes in answer to {part.length} at {where}"
                    kind = FailureKind.INVALID
                else:
                    buffers[part.block][part.offset : part.offset + part.length] = answer
                    continue
                failed.setdefault(part.block, reason)
                failure = failure or Failure(kind, reason)
            if failure is not None:
                cycle.failures.append(failure)
        return {i: failed.get(i) or bytes(buffers[i]) for i in buffers}

    async def write(self, writes: Sequence[TagWrite], verify: bool) -> list[WriteOutcome]:
        """Set values in order, in turn with the polls: a bit by reading, changing and writing
        back its byte (under the link's lock, so no poll comes between); anything else as
        its bytes. Stops at the first that fails."""
        if not self._link.connected:
            raise ConnectorError(f"device {self.device.id} is not connected")
        outcomes: list[WriteOutcome] = []
        async with self._link.lock:
            for write in writes:
                tag = write.tag
                assert isinstance(tag, S7Tag)
                outcome = await self._write_one(tag, write.value, verify)
                outcomes.append(outcome)
                if not outcome.written:
                    break
        return outcomes

    async def _write_one(self, tag: S7Tag, value: Value, verify: bool) -> WriteOutcome:
        where = tag.location
        bit = tag.type is S7DataType.BOOL
        method = "read-modify-write of the byte" if bit else "write var"
        try:
            current = await self._read_tag(tag)
            before = _decode(tag, current)
            if bit:
                assert where.bit is not None
                mask = 1 << where.bit
                data = bytes([(current[0] | mask) if value else (current[0] & ~mask)])
            else:
                data = encode_value(tag, value)  # type: ignore[arg-type]
        except ValueError as exc:
            return WriteOutcome(tag.name, False, str(exc), applied=False)
        except Refused as exc:
            return WriteOutcome(tag.name, False, f"reading {where} first: {exc}", applied=False)
        raw = f"{where}: {data.hex(' ')}"
        try:
            await self._link.write(where.area, where.db, where.byte, data)
        except Refused as exc:
            return WriteOutcome(tag.name, False, str(exc), False, raw, method, before)
        except ConnectorError as exc:
            return WriteOutcome(tag.name, False, str(exc), None, raw, method, before)
        read_back = None
        if verify:
            try:
                read_back = _decode(tag, await self._read_tag(tag))
            except (Refused, ConnectorError) as exc:
                log.warning("%s: %s written, not read back: %s", self.device.id, tag.name, exc)
        return WriteOutcome(tag.name, True, None, True, raw, method, before, read_back)

    async def _read_tag(self, tag: S7Tag) -> bytes:
        where = tag.location
        (answer,) = await self._link.read([(where.area, where.db, where.byte, tag.size)])
        if isinstance(answer, Refused):
            raise answer
        return answer


def _decode(tag: S7Tag, data: bytes) -> Value:
    byte = tag.location.byte
    return BlockDecoder(byte, [(tag, byte)]).decode(data)[0]


def _area_name(block: Block) -> str:
    return f"DB{block.db}" if block.db else block.area.name.lower()
