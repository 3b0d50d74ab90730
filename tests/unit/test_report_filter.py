"""Report by exception: deadbands, heartbeats and quality changes, tick by tick."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.normalize import ReportFilter
from gateway.reading import Batch, Quality, Reading, Value
from gateway.tags import TagBase

S = 1_000_000_000


def run(tag: dict[str, Any], ticks: list[tuple[float, Value, Quality]]) -> list[Value]:
    """Feed one reading per tick (seconds, value, quality); return what got through."""
    rbe = ReportFilter([TagBase.model_validate({"name": "t", **tag})])
    passed: list[Value] = []
    for seconds, value, quality in ticks:
        batch = Batch("d", [Reading("d", "t", value, quality, int(seconds * S), 0)], 0)
        rbe.apply(batch)
        passed += [r.value for r in batch.readings]
    return passed


G, B = Quality.GOOD, Quality.BAD

CASES = [
    pytest.param({}, [(0, 1, G), (1, 1, G), (2, 1, G)], [1, 1, 1], id="default-every-poll"),
    pytest.param(
        {"deadband": {"absolute": 0.5}},
        [(0, 10.0, G), (1, 10.4, G), (2, 10.5, G), (3, 10.6, G), (4, 9.9, G)],
        [10.0, 10.6, 9.9],
        id="absolute-is-strictly-greater-and-relative-to-last-report",
    ),
    pytest.param(
        {"deadband": {"percent": 10}},
        [(0, 100.0, G), (1, 109.0, G), (2, 111.0, G), (3, 121.0, G), (4, 123.0, G)],
        [100.0, 111.0, 123.0],
        id="percent-of-last-reported",
    ),
    pytest.param(
        {"deadband": {"percent": 10}},
        [(0, 0.0, G), (1, 0.0, G), (2, 0.001, G)],
        [0.0, 0.001],
        id="percent-from-zero-reports-any-change",
    ),
    pytest.param(
        {"heartbeat": 5},
        [(0, 1, G), (1, 1, G), (4.9, 1, G), (5, 1, G), (6, 2, G), (7, 2, G)],
        [1, 1, 2],
        id="heartbeat-alone-reports-changes-and-republishes",
    ),
    pytest.param(
        {"deadband": {"absolute": 1}, "heartbeat": 10},
        [(0, 5.0, G), (3, 5.5, G), (10, 5.5, G), (11, 5.6, G), (12, 7.0, G)],
        [5.0, 5.5, 7.0],
        id="deadband-plus-heartbeat",
    ),
    pytest.param(
        {"deadband": {"absolute": 1}},
        [(0, 5.0, G), (1, None, B), (2, None, B), (3, 5.0, G), (4, 5.1, G)],
        [5.0, None, 5.0],
        id="quality-changes-always-report",
    ),
    pytest.param(
        {"heartbeat": 60},
        [(0, "RUN", G), (1, "RUN", G), (2, "STOP", G), (3, True, G)],
        ["RUN", "STOP", True],
        id="strings-and-bools-report-on-change",
    ),
]


@pytest.mark.parametrize(("tag", "ticks", "expected"), CASES)
def test_report_by_exception(
    tag: dict[str, Any], ticks: list[tuple[float, Value, Quality]], expected: list[Value]
) -> None:
    assert run(tag, ticks) == expected


def test_tags_without_rules_pass_and_batches_keep_order() -> None:
    rbe = ReportFilter(
        [
            TagBase(name="a"),
            TagBase.model_validate({"name": "b", "deadband": {"absolute": 10}}),
        ]
    )
    assert rbe.active
    first = Batch("d", [Reading("d", "a", 1, G, 0, 0), Reading("d", "b", 1, G, 0, 0)], 0)
    rbe.apply(first)
    assert [r.tag for r in first.readings] == ["a", "b"]
    second = Batch("d", [Reading("d", "a", 1, G, S, 0), Reading("d", "b", 2, G, S, 0)], S)
    rbe.apply(second)
    assert [r.tag for r in second.readings] == ["a"]


def test_no_rules_means_the_batch_is_untouched() -> None:
    rbe = ReportFilter([TagBase(name="a")])
    readings = [Reading("d", "a", 1, G, 0, 0)]
    batch = Batch("d", readings, 0)
    rbe.apply(batch)
    assert not rbe.active
    assert batch.readings is readings
