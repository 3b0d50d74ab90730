"""The local store's latest readings: newest per tag whatever the batches' tag layouts, kept as
columns so no reading outlives its batch."""

from __future__ import annotations

import sys

from gateway.local_store import LAYOUTS_KEPT, LocalStore
from gateway.reading import Batch, Quality, Reading, bad_readings, good_readings


def batch(device: str, tags: list[str], values: list[int], received_ns: int) -> Batch:
    return Batch(device, good_readings(device, tags, values, received_ns - 1, received_ns), 0)


async def test_groups_with_their_own_tags_make_one_view_of_the_device() -> None:
    store = LocalStore(None)
    await store.write([batch("press", ["a", "b"], [1, 2], 10)])
    await store.write([batch("press", ["c"], [3], 11)])
    await store.write([batch("press", ["a", "b"], [4, 5], 12)])  # the same group, next cycle
    current = store.current("press")
    assert {tag: r.value for tag, r in current.items()} == {"a": 4, "b": 5, "c": 3}
    assert current["c"] == Reading("press", "c", 3, Quality.GOOD, 10, 11, None)
    assert store.current("other") == {}


async def test_a_bad_reading_keeps_its_quality_and_reason() -> None:
    store = LocalStore(None)
    await store.write([batch("press", ["a", "b"], [1, 2], 10)])
    await store.write([Batch("press", bad_readings("press", ["b"], "exception 2", 20), 0)])
    current = store.current("press")
    assert current["a"].value == 1
    assert current["b"].quality is Quality.BAD
    assert (current["b"].value, current["b"].reason) == (None, "exception 2")


async def test_the_newest_by_receipt_wins_across_layouts_and_within_a_batch() -> None:
    store = LocalStore(None)
    await store.write([batch("press", ["a", "b"], [1, 2], 10)])
    await store.write([batch("press", ["b"], [20], 15)])
    assert store.current("press")["b"].value == 20
    await store.write([batch("press", ["a", "b"], [3, 4], 16)])
    assert store.current("press")["b"].value == 4
    await store.write([batch("press", ["a", "a"], [5, 6], 17)])  # a tag twice: the later one
    assert store.current("press")["a"].value == 6


async def test_notifications_of_ever_new_tag_sets_are_folded_not_kept_by_the_set() -> None:
    """OPC UA notifications carry whichever tags changed: a column set per set would grow."""
    store = LocalStore(None)
    tags = [f"t{i}" for i in range(40)]
    for n in range(200):
        chosen = [tags[(n * 7 + k) % 40] for k in range(1 + n % 5)]
        await store.write([batch("plc", chosen, [n] * len(chosen), 100 + n)])
    assert len(store._latest["plc"].columns) <= LAYOUTS_KEPT
    newest: dict[str, int] = {}
    for n in range(200):
        for k in range(1 + n % 5):
            newest[tags[(n * 7 + k) % 40]] = n
    assert {tag: r.value for tag, r in store.current("plc").items()} == newest


async def test_no_reading_outlives_its_batch() -> None:
    store = LocalStore(None)
    readings = good_readings("press", ["a", "b"], [1000, 2000], 5, 10)
    before = [sys.getrefcount(r) for r in readings]
    await store.write([Batch("press", readings, 0)])
    assert [sys.getrefcount(r) for r in readings] == before
    assert store.current("press")["b"].value == 2000


async def test_a_forgotten_device_has_no_readings() -> None:
    store = LocalStore(None)
    await store.write([batch("press", ["a"], [1], 10)])
    store.forget("press")
    assert store.current("press") == {}
