"""The coalescing planner: fewest requests within limits, gaps, overlaps and mixed sizes."""

from __future__ import annotations

import itertools
import random

import pytest

from connectors.modbus.config import Table
from connectors.modbus.planner import ReadRequest, Span, plan_reads, split_request

HR, IR, CO, DI = (
    Table.HOLDING_REGISTER,
    Table.INPUT_REGISTER,
    Table.COIL,
    Table.DISCRETE_INPUT,
)


def spans(*items: tuple[Table, int, int]) -> list[Span]:
    return [Span(table, address, size, i) for i, (table, address, size) in enumerate(items)]


def shape(requests: list[ReadRequest]) -> list[tuple[str, int, int, list[int]]]:
    return [(r.table.value, r.address, r.count, [s.tag for s in r.spans]) for r in requests]


# (spans, max_registers, max_gap, expected [(table, address, count, tag indexes)])
CASES = [
    pytest.param([(HR, 0, 1)], 125, 10, [("holding_register", 0, 1, [0])], id="single"),
    pytest.param(
        [(HR, 0, 2), (HR, 2, 2), (HR, 4, 1)],
        125,
        0,
        [("holding_register", 0, 5, [0, 1, 2])],
        id="contiguous-merge-with-zero-gap",
    ),
    pytest.param(
        [(HR, 0, 1), (HR, 5, 1)],
        125,
        4,
        [("holding_register", 0, 6, [0, 1])],
        id="gap-equal-to-max-is-read-through",
    ),
    pytest.param(
        [(HR, 0, 1), (HR, 6, 1)],
        125,
        4,
        [("holding_register", 0, 1, [0]), ("holding_register", 6, 1, [1])],
        id="gap-beyond-max-splits",
    ),
    pytest.param(
        [(HR, 0, 2), (HR, 1, 1), (HR, 0, 4)],
        125,
        0,
        [("holding_register", 0, 4, [2, 0, 1])],
        id="overlaps-share-a-request",
    ),
    pytest.param(
        [(HR, 0, 100), (HR, 100, 30)],
        125,
        10,
        [("holding_register", 0, 100, [0]), ("holding_register", 100, 30, [1])],
        id="limit-125",
    ),
    pytest.param(
        [(HR, 0, 2), (HR, 8, 2)],
        8,
        10,
        [("holding_register", 0, 2, [0]), ("holding_register", 8, 2, [1])],
        id="per-device-cap",
    ),
    pytest.param(
        [(HR, 0, 4), (HR, 121, 4)],
        125,
        125,
        [("holding_register", 0, 125, [0, 1])],
        id="exactly-125",
    ),
    pytest.param(
        [(HR, 0, 4), (HR, 122, 4)],
        125,
        125,
        [("holding_register", 0, 4, [0]), ("holding_register", 122, 4, [1])],
        id="one-past-125",
    ),
    pytest.param(
        [(HR, 10, 1), (IR, 10, 1), (HR, 11, 1), (IR, 11, 2)],
        125,
        0,
        [("holding_register", 10, 2, [0, 2]), ("input_register", 10, 3, [1, 3])],
        id="tables-never-mix",
    ),
    pytest.param(
        [(HR, 50, 1), (HR, 10, 1), (HR, 30, 2)],
        125,
        20,
        [("holding_register", 10, 41, [1, 2, 0])],
        id="unsorted-input",
    ),
    pytest.param(
        [(CO, 0, 1), (CO, 1999, 1), (CO, 2000, 1), (DI, 5, 1)],
        125,
        2000,
        [("coil", 0, 2000, [0, 1]), ("coil", 2000, 1, [2]), ("discrete_input", 5, 1, [3])],
        id="bits-limit-2000",
    ),
    pytest.param(
        [(HR, 65534, 2), (HR, 65530, 1)],
        125,
        10,
        [("holding_register", 65530, 6, [1, 0])],
        id="top-of-address-space",
    ),
]


@pytest.mark.parametrize(("items", "max_registers", "max_gap", "expected"), CASES)
def test_plan(
    items: list[tuple[Table, int, int]],
    max_registers: int,
    max_gap: int,
    expected: list[tuple[str, int, int, list[int]]],
) -> None:
    plan = plan_reads(spans(*items), max_registers=max_registers, max_bits=2000, max_gap=max_gap)
    assert shape(plan) == expected


def test_a_tag_larger_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="more than one read"):
        plan_reads(spans((HR, 0, 10)), max_registers=8, max_bits=2000, max_gap=0)


def test_thousand_registers_become_eight_requests() -> None:
    plan = plan_reads(
        spans(*[(HR, a, 1) for a in range(1000)]), max_registers=125, max_bits=2000, max_gap=0
    )
    assert [(r.address, r.count) for r in plan] == [(a, 125) for a in range(0, 1000, 125)]


@pytest.mark.parametrize("seed", range(40))
def test_random_layouts_keep_every_invariant(seed: int) -> None:
    rng = random.Random(seed)
    max_registers = rng.choice([8, 16, 60, 125])
    max_gap = rng.choice([0, 1, 5, 20])
    items = [
        (rng.choice([HR, IR]), rng.randrange(0, 400), rng.choice([1, 1, 2, 4, 8]))
        for _ in range(rng.randrange(1, 80))
    ]
    plan = plan_reads(spans(*items), max_registers=max_registers, max_bits=2000, max_gap=max_gap)
    seen = sorted(s.tag for r in plan for s in r.spans)
    assert seen == list(range(len(items))), "every tag is read exactly once"
    for request in plan:
        assert request.count <= max_registers
        for span in request.spans:
            assert span.table is request.table
            assert request.address <= span.address and span.end <= request.end
        assert min(s.address for s in request.spans) == request.address
        assert max(s.end for s in request.spans) == request.end
        covered = request.address
        for span in sorted(request.spans, key=lambda s: s.address):
            assert span.address - covered <= max_gap
            covered = max(covered, span.end)
    # Greedy is optimal for non-overlapping tags: no two neighbours in one table could merge.
    for before, after in itertools.pairwise(plan):
        if before.table is after.table:
            first_of_next = min(after.spans, key=lambda s: s.address)
            merged_end = max(before.end, first_of_next.end)
            assert (
                first_of_next.address - before.end > max_gap
                or merged_end - before.address > max_registers
            )


def test_split_drops_the_gaps_first_then_splits_per_tag() -> None:
    request = plan_reads(
        spans((HR, 40, 2), (HR, 42, 1), (HR, 60, 2)), max_registers=125, max_bits=2000, max_gap=30
    )[0]
    assert request.has_gaps
    first = split_request(request)
    assert [(r.address, r.count) for r in first] == [(40, 3), (60, 2)]
    assert not first[0].has_gaps
    second = split_request(first[0])
    assert [(r.address, r.count, r.spans[0].tag) for r in second] == [(40, 2, 0), (42, 1, 1)]
