"""Automatic coalescing: merge a device's tags into the fewest Modbus read requests.

Tags of one table are sorted by address and swept greedily: a tag joins the current request if
the registers skipped to reach it are at most ``max_gap`` and the request stays within the
device's limit (125 registers / 2000 bits at most). For tags that do not overlap the sweep is
optimal; overlapping tags (two views of the same registers) simply share a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.modbus.config import Table

__all__ = ["ReadRequest", "Span", "plan_reads", "split_request"]


@dataclass(frozen=True, slots=True)
class Span:
    """Where one tag lives: its table, protocol (0-based) address and size in registers/bits."""

    table: Table
    address: int
    size: int
    tag: int
    """Index of the tag in the caller's list."""

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True, slots=True)
class ReadRequest:
    table: Table
    address: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    @property
    def has_gaps(self) -> bool:
        covered = self.address
        for span in self.spans:
            if span.address > covered:
                return True
            covered = max(covered, span.end)
        return False


def plan_reads(
    spans: Sequence[Span], *, max_registers: int, max_bits: int, max_gap: int
) -> list[ReadRequest]:
    """The fewest requests covering every span; requests come out ordered by table and address."""
    requests: list[ReadRequest] = []
    ordered = sorted(spans, key=lambda s: (s.table.value, s.address, -s.size, s.tag))
    current: list[Span] = []
    start = end = 0
    limit = 0
    for span in ordered:
        span_limit = max_bits if span.table.is_bits else max_registers
        if span.size > span_limit:
            raise ValueError(
                f"tag {span.tag} spans {span.size}, more than one read of {span_limit}"
            )
        if (
            current
            and span.table is current[0].table
            and span.address - end <= max_gap
            and max(end, span.end) - start <= limit
        ):
            current.append(span)
            end = max(end, span.end)
            continue
        if current:
            requests.append(ReadRequest(current[0].table, start, end - start, tuple(current)))
        current, start, end, limit = [span], span.address, span.end, span_limit
    if current:
        requests.append(ReadRequest(current[0].table, start, end - start, tuple(current)))
    return requests


def split_request(request: ReadRequest) -> list[ReadRequest]:
    """Smaller requests for one the device refused as a whole (a hole in its register map).

    First read only what the tags cover (no gaps read through); a request without gaps is split
    into one request per tag, so a single bad address costs only its own tag.
    """
    if request.has_gaps:
        return plan_reads(
            request.spans, max_registers=request.count, max_bits=request.count, max_gap=0
        )
    return [ReadRequest(s.table, s.address, s.size, (s,)) for s in request.spans]
