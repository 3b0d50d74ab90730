"""Zero data loss, counted end to end through real faults (tests/support/faults.py).

Every reading a device served is counted from the simulator's record; the tests check that
each one the gateway accepted reached the sink, through broker and database outages and a
gateway crash, and that a drop forced by the outbox's size bound is counted exactly. The same
scenarios produce the README's reliability table (``python -m bench.reliability``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.faults import (
    DEVICES,
    IN_FLIGHT_NS,
    INTERVAL,
    TAGS,
    Tally,
    broker_outage,
    core_task_killed,
    damaged_database,
    device_flapping,
    disk_full,
    gateway_crash,
    history_locked,
    outbox_cap,
    power_cut,
    second_instance,
    tsdb_outage,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE = 30.0
"""Seconds the broker or the database stays down."""
IN_FLIGHT_CYCLES = round(IN_FLIGHT_NS / 1e9 / INTERVAL)
"""Cycles per device that may be in flight at a kill."""


def assert_during_the_fault(tally: Tally, seconds: float) -> None:
    """The devices were polled on schedule while the fault lasted (nothing stalled)."""
    start, end = tally.window_ns
    during = sum(1 for read in tally.cycles if start <= read.t_ns < end)
    assert during >= 0.9 * DEVICES * seconds / INTERVAL, (during, seconds)


def assert_nothing_lost(tally: Tally) -> None:
    assert tally.missing == {}, "served cycles that never arrived (device: part counters)"
    assert tally.dropped == 0
    assert tally.delivered == tally.accepted
    assert tally.lost == 0
    assert "Traceback" not in tally.gateway_log


def test_a_broker_outage_under_load_loses_nothing(tmp_path: Path) -> None:
    tally = broker_outage(tmp_path, OUTAGE)
    assert_during_the_fault(tally, OUTAGE)
    # The simulator stopped first, so every read it served was accepted.
    assert tally.accepted == tally.served
    assert_nothing_lost(tally)


def test_a_database_outage_loses_no_point(tmp_path: Path) -> None:
    tally = tsdb_outage(tmp_path, OUTAGE)
    assert_during_the_fault(tally, OUTAGE)
    assert tally.accepted == tally.served
    assert_nothing_lost(tally)
    assert "writing again" in tally.gateway_log


def test_a_gateway_killed_during_an_outage_replays_its_outbox(tmp_path: Path) -> None:
    tally = gateway_crash(tmp_path, OUTAGE)
    assert_during_the_fault(tally, OUTAGE * 0.8)  # less the restart of the gateway
    # Only what was in flight at the SIGKILL may be served but never accepted: polled in its
    # last 0.3 s, not yet stored; at most three cycles per device (reported, not hidden).
    assert tally.in_flight <= IN_FLIGHT_CYCLES * DEVICES * len(TAGS)
    # The gateway may have counted a poll it could not store before the kill (in flight).
    assert tally.accepted + tally.in_flight >= tally.accepted_seen
    assert_nothing_lost(tally)


def test_the_outbox_cap_drops_the_oldest_and_counts_them_exactly(tmp_path: Path) -> None:
    tally = outbox_cap(tmp_path, max_mb=1)
    assert tally.accepted == tally.served
    assert tally.dropped > 0
    assert tally.delivered + tally.dropped == tally.accepted  # exactly: nothing silent
    assert tally.lost == 0
    assert "dropping the oldest" in tally.gateway_log
    assert "Traceback" not in tally.gateway_log
    # What is missing is exactly what was counted, and it is each device's oldest data of the
    # outage: one unbroken run of its cycles, with everything after it delivered.
    assert sum(map(len, tally.missing.values())) * len(TAGS) == tally.dropped
    order: dict[str, list[int]] = defaultdict(list)
    served_at = {}
    for read in tally.cycles:
        order[read.device].append(read.counter)
        served_at[read.device, read.counter] = read.t_ns
    start, end = tally.window_ns
    for device, counters in tally.missing.items():
        served = order[device]
        first = served.index(counters[0])
        assert served[first : first + len(counters)] == counters, device
        # Served during the outage, or just before it: on its way to the broker when it stopped.
        assert all(start - IN_FLIGHT_NS <= served_at[device, c] < end for c in counters), device


def test_a_flapping_device_does_not_slow_the_others(tmp_path: Path) -> None:
    flaps = 5
    tally = device_flapping(tmp_path, flaps=flaps)
    assert all(rate >= 0.95 for rate in tally.rates.values()), tally.rates
    # A read the simulator served just before its SIGKILL may never reach the gateway.
    assert tally.served - tally.accepted <= flaps * len(TAGS)
    assert_nothing_lost(tally)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_a_full_disk_during_an_outage_loses_nothing_uncounted(tmp_path: Path) -> None:
    tally = disk_full(tmp_path, OUTAGE)
    assert tally.accepted == tally.served
    assert tally.delivered + tally.dropped == tally.accepted  # exactly: nothing silent
    assert tally.lost == 0
    assert "Traceback" not in tally.gateway_log
    assert "storing batches again" in tally.gateway_log


def test_a_second_gateway_on_the_data_dir_is_refused_and_costs_nothing(tmp_path: Path) -> None:
    tally = second_instance(tmp_path, OUTAGE)
    assert tally.accepted == tally.served
    assert_nothing_lost(tally)
    assert "is in use by PID" in tally.notes[-1]


def test_a_damaged_database_at_start_is_set_aside(tmp_path: Path) -> None:
    tally = damaged_database(tmp_path, OUTAGE)
    assert tally.accepted == tally.served
    assert_nothing_lost(tally)
    assert "gateway.db.damaged-" in tally.notes[-1]


def test_a_locked_history_costs_the_outbox_nothing(tmp_path: Path) -> None:
    tally = history_locked(tmp_path, OUTAGE)
    assert tally.accepted == tally.served
    assert_nothing_lost(tally)


def test_a_power_cut_with_sync_full_loses_nothing(tmp_path: Path) -> None:
    tally = power_cut(tmp_path, OUTAGE, "full")
    assert tally.in_flight <= IN_FLIGHT_CYCLES * DEVICES * len(TAGS)
    assert_nothing_lost(tally)


def test_a_power_cut_with_sync_normal_loses_what_was_never_synced(tmp_path: Path) -> None:
    tally = power_cut(tmp_path, OUTAGE, "normal")
    # What the torn WAL held is gone: counted here, by the test, and shown in the table (unless
    # the kill came right after a checkpoint, with no frame to cut).
    assert tally.lost > 0 or "torn after the kill: 0 of" in tally.notes[-1]
    assert tally.dropped == 0 and tally.delivered + tally.lost == tally.accepted
    assert "WAL torn" in tally.notes[-1]
    assert "Traceback" not in tally.gateway_log


def test_a_killed_core_task_is_restarted_then_the_gateway_gives_up_and_loses_nothing(
    tmp_path: Path,
) -> None:
    tally = core_task_killed(tmp_path, OUTAGE)
    assert tally.in_flight <= DEVICES * len(TAGS)  # at most one poll per device at the exit
    assert tally.missing == {}
    assert tally.dropped == 0 and tally.lost == 0
    assert tally.delivered == tally.accepted
    once, again = tally.notes[-2:]
    assert "traceback logged" in once and "(1 restart counted)" in once
    assert "died 5 times within 60 s" in again and "exited with code 1" in again
