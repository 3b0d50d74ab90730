"""The collector's settings against the polls' allocation pattern (gateway/memory.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from enum import Enum

import pytest

from gateway.memory import collect_less_often


class _Quality(Enum):
    GOOD = "good"


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection while the test runs; the thresholds restored."""
    saved = gc.get_threshold()
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    gc.set_threshold(*saved)


def _poll_like(rounds: int, tags: int) -> None:
    """A batch of readings (tracked tuples: they hold an enum member) made, then stored in
    place of the previous poll's, which are freed."""
    latest: dict[int, tuple[object, ...]] = {}
    for cycle in range(rounds):
        batch = [("dev", tag, cycle, _Quality.GOOD) for tag in range(tags)]
        latest.update(zip(range(tags), batch, strict=True))


def test_steady_polls_trigger_no_collection(collections: list[int]) -> None:
    gc.collect()
    collections.clear()
    collect_less_often()
    _poll_like(rounds=30, tags=3000)
    assert collections == []


def test_the_default_settings_collect_the_same_load_over_and_over(
    collections: list[int],
) -> None:
    """What the tuning removes (so the test above would catch its loss)."""
    gc.collect()
    collections.clear()
    gc.set_threshold(700, 10, 10)
    _poll_like(rounds=30, tags=3000)
    assert len(collections) >= 30  # one a poll at least


def test_cyclic_garbage_is_still_collected(collections: list[int]) -> None:
    gc.collect()
    collections.clear()
    collect_less_often()
    for _ in range(30_000):
        node: list[object] = []
        node.append(node)  # a cycle: freed only by the collector
    assert collections
