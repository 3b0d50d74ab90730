"""The Modbus connector: polls a device's groups on schedule and yields one batch per cycle."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pymodbus.pdu import ModbusPDU

from connectors.modbus.config import ModbusDeviceConfig, ModbusGroup, ModbusTag, Table
from connectors.modbus.decode import BlockDecoder
from connectors.modbus.link import LinkPool, ModbusLink, NoResponse
from connectors.modbus.planner import ReadRequest, Span, plan_reads, split_request
from gateway.errors import ConnectorError
from gateway.reading import Batch, Quality, Reading, Value, good_readings
from gateway.status import DeviceState, DeviceStatus

__all__ = ["ModbusConnector", "exception_reason"]

log = logging.getLogger(__name__)

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_ILLEGAL_DATA_ADDRESS = 2
_READ_FUNCTION_CODES = {
    Table.COIL: 1,
    Table.DISCRETE_INPUT: 2,
    Table.HOLDING_REGISTER: 3,
    Table.INPUT_REGISTER: 4,
}


def exception_reason(code: int) -> str:
    return f"modbus exception {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})"


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


class _GroupPlan:
    def __init__(self, group: ModbusGroup, device: ModbusDeviceConfig) -> None:
        self.group = group
        self.tags = group.tags
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
        self.reads = [_planned(request, self.tags) for request in requests]
        seed = zlib.crc32(f"{device.id}/{group.name}".encode())
        self.phase = group.interval * seed / 2**32
        """Where in the interval this group's polls fall, stable for a device across restarts."""


class ModbusConnector:
    """One Modbus device (one unit id on one endpoint)."""

    def __init__(
        self,
        device: ModbusDeviceConfig,
        groups: Sequence[ModbusGroup],
        status: DeviceStatus,
        links: LinkPool,
    ) -> None:
        self.device = device
        self.status = status
        self._links = links
        self._link: ModbusLink | None = None
        self._plans = [_GroupPlan(group, device) for group in groups]

    @property
    def request_count(self) -> int:
        """Read requests per full cycle of all groups, after coalescing."""
        return sum(len(plan.reads) for plan in self._plans)

    async def start(self) -> None:
        if self._link is None:
            self._link = self._links.acquire(self.device)
        if await self._link.ensure_connected():
            self.status.connects += 1

    async def stop(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            self._links.release(link)

    async def batches(self) -> AsyncIterator[Batch]:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        due = [begin] * len(self._plans)
        polled = [False] * len(self._plans)
        while True:
            index = min(range(len(due)), key=due.__getitem__)
            wait = due[index] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            plan = self._plans[index]
            started = loop.time()
            batch = await self._poll(plan)
            finished = loop.time()
            self.status.last_poll_duration_s = finished - started
            interval = plan.group.interval
            if not polled[index]:
                # The first poll happens at once; later ones keep a phase of their own, so
                # hundreds of devices with one interval spread their polls over it instead of
                # all polling (and publishing) in the same instant.
                polled[index] = True
                due[index] = begin + plan.phase
                while due[index] <= finished:
                    due[index] += interval
                yield batch
                continue
            due[index] += interval
            if due[index] < finished:
                # Overrun: skip the cycles that could not start on time instead of queueing
                # them, so polls never overlap and readings never age.
                missed = int((finished - due[index]) // interval) + 1
                due[index] += missed * interval
                self.status.overruns += 1
                self.status.skipped_cycles += missed
            yield batch

    async def _poll(self, plan: _GroupPlan) -> Batch:
        link = self._link
        if link is None:
            raise ConnectorError(f"device {self.device.id} is not started")
        device = self.device.id
        cycle_ns = time.time_ns()
        readings: list[Reading] = []
        failures: list[str] = []
        pending = list(plan.reads)
        done: list[_PlannedRead] = []
        failed: list[_PlannedRead] = []
        while pending:
            read = pending.pop(0)
            request = read.request
            try:
                response = await link.read(
                    request.table, request.address, request.count, self.device.unit
                )
            except NoResponse:
                reason = f"no response within {self.device.timeout:g} s"
                self._bad(readings, read, reason, cycle_ns)
                failures.append(reason)
                failed.append(read)
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
                    pending[:0] = smaller
                    continue
                reason = exception_reason(code)
                self._bad(readings, read, reason, cycle_ns)
                failures.append(f"{reason} reading {request.table.value} {request.address}")
                failed.append(read)
                done.append(read)
                continue
            invalid = _invalid(response, request)
            if invalid is not None:
                self._bad(readings, read, invalid, cycle_ns)
                failures.append(f"{invalid} reading {request.table.value} {request.address}")
                failed.append(read)
                done.append(read)
                continue
            received_ns = time.time_ns()
            if read.decoder is None:
                bits = response.bits
                values: Sequence[Value] = [bits[offset] for offset in read.bit_offsets]
            else:
                values = read.decoder.decode(response.registers)
            readings += good_readings(device, read.names, values, cycle_ns, received_ns)
            done.append(read)
        plan.reads = done
        self._account(len(done), failed, failures, readings, cycle_ns)
        return Batch(device, readings, cycle_ns)

    def _bad(self, readings: list[Reading], read: _PlannedRead, reason: str, cycle_ns: int) -> None:
        received_ns = time.time_ns()
        device = self.device.id
        for name in read.names:
            readings.append(Reading(device, name, None, Quality.BAD, cycle_ns, received_ns, reason))

    def _account(
        self,
        requests: int,
        failed: list[_PlannedRead],
        failures: list[str],
        readings: list[Reading],
        cycle_ns: int,
    ) -> None:
        status = self.status
        status.polls += 1
        status.requests += requests
        status.request_errors += len(failures)
        good = len(readings) - sum(len(read.names) for read in failed)
        status.values += good
        if good:
            status.last_good_read_ns = cycle_ns
        if not failures:
            status.state = DeviceState.ONLINE
            status.last_error = None
        elif len(failures) == requests:
            status.state = DeviceState.OFFLINE
            status.last_error = failures[0]
        else:
            status.state = DeviceState.DEGRADED
            status.last_error = failures[0]
