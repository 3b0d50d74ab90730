"""The Modbus connector: polls a device's groups on schedule and reports one cycle per poll."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pymodbus.pdu import ModbusPDU

from connectors.modbus.config import ModbusDeviceConfig, ModbusGroup, ModbusTag, Table
from connectors.modbus.decode import BlockDecoder
from connectors.modbus.line import read_time
from connectors.modbus.link import LinkPool, ModbusLink, NoResponse, Undecodable, exception_reason
from connectors.modbus.planner import ReadRequest, Span, plan_reads, split_request
from connectors.modbus.write import ModbusWriter
from gateway.cycle import Cycle, Failure, FailureKind
from gateway.errors import ConnectorError
from gateway.protocols import TagWrite, WriteOutcome
from gateway.reading import Reading, Value, bad_readings, good_readings
from gateway.schedule import PollScheduler, phase_of

__all__ = ["ModbusConnector", "ReadPlans"]

log = logging.getLogger(__name__)

_ILLEGAL_DATA_ADDRESS = 2
_BUSY = 6
_BUSY_DELAY = 0.02
"""Seconds before the first retry of a busy answer; the next waits twice as long, and so on."""
_READ_FUNCTION_CODES = {
    Table.COIL: 1,
    Table.DISCRETE_INPUT: 2,
    Table.HOLDING_REGISTER: 3,
    Table.INPUT_REGISTER: 4,
}


def _invalid(response: ModbusPDU, request: ReadRequest) -> str | None:
    """Why a well-framed answer that is no exception still cannot be decoded, or None.

    pymodbus hands over whatever the device sent with a matching transaction id: the answer
    of another function (another table's data) or fewer values than were asked for."""
    function_code = _READ_FUNCTION_CODES[request.table]
    if response.function_code != function_code:
        return (
            f"invalid response: function code {response.function_code} "
            f"to a read of function code {function_code}"
        )
    got = len(response.bits) if request.table.is_bits else len(response.registers)
    if got < request.count:
        unit = "bits" if request.table.is_bits else "registers"
        return f"invalid response: {got} {unit} to a read of {request.count}"
    return None


@dataclass(slots=True)
class _PlannedRead:
    request: ReadRequest
    names: tuple[str, ...]
    decoder: BlockDecoder | None
    """None for coil and discrete input tables, whose values are bits at ``bit_offsets``."""
    bit_offsets: tuple[int, ...]


def _planned(request: ReadRequest, tags: Sequence[ModbusTag]) -> _PlannedRead:
    names = tuple(tags[span.tag].name for span in request.spans)
    if request.table.is_bits:
        offsets = tuple(span.address - request.address for span in request.spans)
        return _PlannedRead(request, names, None, offsets)
    located = [(tags[span.tag], span.address) for span in request.spans]
    return _PlannedRead(request, names, BlockDecoder(request.address, request.count, located), ())


class _SharedReads:
    __slots__ = ("__weakref__", "group", "reads")

    def __init__(self, group: ModbusGroup, device: ModbusDeviceConfig) -> None:
        self.group = group
        """Held so that the group's id, part of the key, is not reused while this lives."""
        spans = [
            Span(tag.table, tag.address - device.address_base, tag.size, index)
            for index, tag in enumerate(group.tags)
        ]
        requests = plan_reads(
            spans,
            max_registers=device.max_registers_per_read,
            max_bits=device.max_bits_per_read,
            max_gap=device.max_gap,
        )
        self.reads = tuple(_planned(request, group.tags) for request in requests)


class ReadPlans:
    """The planned reads (spans, decoders) of each group, shared by every device that polls
    the same group object with the same read limits: the devices of one profile keep one
    plan, not one each (at 100 devices × 1000 tags, 17 MB less). A plan lives as long as a
    device uses it."""

    def __init__(self) -> None:
        self._shared: weakref.WeakValueDictionary[tuple[int, ...], _SharedReads] = (
            weakref.WeakValueDictionary()
        )

    def get(self, group: ModbusGroup, device: ModbusDeviceConfig) -> _SharedReads:
        key = (
            id(group),
            device.address_base,
            device.max_registers_per_read,
            device.max_bits_per_read,
            device.max_gap,
        )
        shared = self._shared.get(key)
        if shared is None or shared.group is not group:
            shared = self._shared[key] = _SharedReads(group, device)
        return shared


class _GroupPlan:
    __slots__ = ("_shared", "group", "reads", "tags")

    def __init__(self, shared: _SharedReads) -> None:
        self._shared = shared
        self.group = shared.group
        self.tags = shared.group.tags
        self.reads: Sequence[_PlannedRead] = shared.reads
        """This device's own once a request is split (the device refused it as a whole)."""


class ModbusConnector:
    """One Modbus device (one unit id on one endpoint)."""

    def __init__(
        self,
        device: ModbusDeviceConfig,
        groups: Sequence[ModbusGroup],
        links: LinkPool,
        plans: ReadPlans | None = None,
    ) -> None:
        self.device = device
        self._links = links
        self._link: ModbusLink | None = None
        plans = plans or ReadPlans()
        self._plans = [_GroupPlan(plans.get(group, device)) for group in groups]
        self._writer = ModbusWriter(device)

    async def start(self) -> bool:
        if self._link is None:
            self._link = self._links.acquire(self.device)
            if self._link.rtu:
                self._link.load.demand(self.device.id, self._line_share(self._link))
        return await self._link.ensure_connected()

    def _line_share(self, link: ModbusLink) -> float:
        """The share of the line's time this unit's polls need at least (frames at the baud
        rate, no turnaround)."""
        return sum(
            sum(
                read_time(read.request.table.is_bits, read.request.count, link.char_s, link.gap_s)
                for read in plan.reads
            )
            / plan.group.interval
            for plan in self._plans
        )

    async def write(self, writes: Sequence[TagWrite], verify: bool) -> list[WriteOutcome]:
        """Set tag values (see connectors/modbus/write.py), in turn with the polls."""
        if self._link is None:
            raise ConnectorError(f"device {self.device.id} is not started")
        return await self._writer.write(self._link, writes, verify)

    async def stop(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            link.load.demand(self.device.id, None)
            self._links.release(link)

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
            cycle = await self._poll(plans[index])
            finished = loop.time()
            cycle.duration_s = finished - started
            silent = sum(1 for f in cycle.failures if f.kind is FailureKind.TIMEOUT)
            answered = silent < cycle.requests or not cycle.requests
            cycle.skipped = schedule.done(index, finished, answered)
            if not answered and self._link is not None and self._link.rtu:
                # A silent unit on a shared line is asked again only now and then: each ask
                # costs the other units its timeout.
                schedule.defer(finished + self.device.silent_retry)
            yield cycle
            del cycle  # not held through the wait for the next poll (see gateway/cycle.py)

    async def _poll(self, plan: _GroupPlan) -> Cycle:
        link = self._link
        if link is None:
            raise ConnectorError(f"device {self.device.id} is not started")
        device = self.device.id
        cycle = Cycle([], time.time_ns())
        readings = cycle.readings
        pending = list(plan.reads)
        done: list[_PlannedRead] = []
        priority = plan.group.priority
        while pending:
            read = pending.pop(0)
            request = read.request
            where = f"reading {request.table.value} {request.address}"
            cycle.requests += 1
            try:
                response = await self._read(link, request, cycle, priority)
            except NoResponse:
                reason = f"no response within {self.device.timeout:g} s"
                self._bad(readings, read, reason, cycle.time_ns)
                cycle.failures.append(Failure(FailureKind.TIMEOUT, f"{reason} {where}"))
                done.append(read)
                if link.rtu:
                    # A silent unit on a shared line costs the others one timeout per
                    # cycle, not one per request: the rest of its cycle is not sent.
                    for unsent in pending:
                        self._bad(readings, unsent, f"not sent: {reason}", cycle.time_ns)
                    done += pending
                    pending.clear()
                continue
            except Undecodable as exc:
                self._bad(readings, read, str(exc), cycle.time_ns)
                cycle.failures.append(Failure(FailureKind.INVALID, f"{exc} {where}"))
                done.append(read)
                continue
            if response.isError():
                code = int(response.exception_code)
                if code == _ILLEGAL_DATA_ADDRESS and len(request.spans) > 1:
                    smaller = [_planned(r, plan.tags) for r in split_request(request)]
                    log.warning(
                        "%s: %s %d..%d refused as a whole (illegal data address); "
                        "reading it as %d smaller requests from now on",
                        device,
                        request.table.value,
                        request.address,
                        request.end - 1,
                        len(smaller),
                    )
                    cycle.requests -= 1  # replaced by the smaller ones
                    pending[:0] = smaller
                    continue
                reason = exception_reason(code)
                kind = FailureKind.BUSY if code == _BUSY else FailureKind.REFUSED
                self._bad(readings, read, reason, cycle.time_ns)
                cycle.failures.append(Failure(kind, f"{reason} {where}"))
                done.append(read)
                continue
            invalid = _invalid(response, request)
            if invalid is not None:
                self._bad(readings, read, invalid, cycle.time_ns)
                cycle.failures.append(Failure(FailureKind.INVALID, f"{invalid} {where}"))
                done.append(read)
                continue
            received_ns = time.time_ns()
            if read.decoder is None:
                bits = response.bits
                values: Sequence[Value] = [bits[offset] for offset in read.bit_offsets]
            else:
                values = read.decoder.decode(response.registers)
            readings += good_readings(device, read.names, values, cycle.time_ns, received_ns)
            done.append(read)
        plan.reads = done
        if link.rtu:
            cycle.line = link.load.snapshot(self.device.unit)
        return cycle

    async def _read(
        self, link: ModbusLink, request: ReadRequest, cycle: Cycle, priority: int
    ) -> ModbusPDU:
        """One request, retried while the device answers busy (exception 6), at most
        ``busy_retries`` times, a little later each time."""
        device = self.device
        for attempt in range(device.busy_retries + 1):
            response = await link.read(
                request.table,
                request.address,
                request.count,
                device.unit,
                device.timeout,
                priority,
            )
            if not response.isError() or int(response.exception_code) != _BUSY:
                return response
            if attempt < device.busy_retries:
                cycle.retries += 1
                await asyncio.sleep(_BUSY_DELAY * (attempt + 1))
        return response

    def _bad(self, readings: list[Reading], read: _PlannedRead, reason: str, cycle_ns: int) -> None:
        readings += bad_readings(self.device.id, read.names, reason, cycle_ns)
