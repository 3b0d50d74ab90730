"""The runtime's rules for device state, the same for every protocol (gateway/health.py), and
the one poll scheduler (gateway/schedule.py)."""

from __future__ import annotations

import pytest

from gateway.cycle import Cycle, Failure, FailureKind
from gateway.health import DeviceHealth
from gateway.schedule import PollScheduler
from gateway.status import DeviceStatus
from tests.unit.fakes import readings

HOLD = 10.0
TIMEOUT = Failure(FailureKind.TIMEOUT, "no response within 1 s reading holding_register 0")
BUSY = Failure(FailureKind.BUSY, "modbus exception 6 (server device busy)")
REFUSED = Failure(FailureKind.REFUSED, "modbus exception 2 (illegal data address)")
GARBAGE = Failure(FailureKind.INVALID, "undecodable answer: 17 bytes")


def cycle(
    requests: int = 1, *failures: Failure, retries: int = 0, standing: str | None = None
) -> Cycle:
    return Cycle(readings("d", [1.0]), 1, requests, list(failures), retries, standing=standing)


# (the cycle, the state after it, the last error)
RULES = [
    (cycle(2), "online", None),
    (cycle(2, retries=1), "degraded", "device busy: 1 request(s) answered only after a retry"),
    (cycle(2, BUSY), "degraded", BUSY.reason),
    (cycle(1, BUSY), "degraded", BUSY.reason),  # busy is never offline
    (cycle(2, REFUSED), "degraded", REFUSED.reason),
    (cycle(2, REFUSED, REFUSED), "offline", REFUSED.reason),  # not one value
    (cycle(1, GARBAGE), "offline", GARBAGE.reason),
    (cycle(2, BUSY, REFUSED), "degraded", BUSY.reason),
    (cycle(2, TIMEOUT), "degraded", TIMEOUT.reason),
    (cycle(2, TIMEOUT, TIMEOUT), "offline", TIMEOUT.reason),  # nothing answered
    (cycle(1, standing="2 tag(s) unavailable"), "degraded", "2 tag(s) unavailable"),
]


@pytest.mark.parametrize(("report", "state", "error"), RULES)
def test_state_from_one_cycle(report: Cycle, state: str, error: str | None) -> None:
    health = DeviceHealth(DeviceStatus("d"), HOLD)
    health.cycle(report, 0.0)
    assert (health.status.state.value, health.status.last_error) == (state, error)


def test_degraded_is_held_then_online_again() -> None:
    health = DeviceHealth(DeviceStatus("d"), HOLD)
    health.cycle(cycle(1, retries=1), 0.0)
    for now in (1.0, 5.0, 9.9):
        health.cycle(cycle(1), now)
        assert health.status.state.value == "degraded"
    health.cycle(cycle(1), 10.0)
    assert (health.status.state.value, health.status.last_error) == ("online", None)


def test_back_from_offline_is_online_at_once() -> None:
    health = DeviceHealth(DeviceStatus("d"), HOLD)
    health.link_down("connection refused", 0.0)
    health.cycle(cycle(1), 1.0)
    assert health.status.state.value == "online"
    health.cycle(cycle(1, TIMEOUT), 2.0)
    health.cycle(cycle(1), 3.0)
    assert health.status.state.value == "online"


def test_counters_come_from_the_reports() -> None:
    status = DeviceStatus("d")
    health = DeviceHealth(status, HOLD)
    health.connected()
    health.cycle(Cycle(readings("d", [1.0, 2.0]), 7, 3, [REFUSED], 2, 4, 0.5), 0.0)
    health.link_down("connection to 10.0.0.1:502 lost", 1.0)
    assert (status.polls, status.requests, status.request_errors, status.busy_retries) == (
        1,
        3,
        1,
        2,
    )
    assert (status.overruns, status.skipped_cycles, status.last_poll_duration_s) == (1, 4, 0.5)
    assert (status.values, status.last_good_read_ns) == (2, 7)
    assert (status.connects, status.reconnects, status.state.value) == (1, 1, "offline")


def test_first_polls_spread_over_a_second_at_most_in_phase_order() -> None:
    schedule = PollScheduler([60.0, 0.5, 60.0], [45.0, 0.25, 12.0], begin=100.0)
    assert schedule.next() == (2, 100.2)  # a fifth into its minute: a fifth of a second in
    schedule.done(2, 100.3, answered=True)
    assert schedule.next() == (1, 100.25)  # an interval shorter than the spread: its phase
    schedule.done(1, 100.3, answered=True)
    assert schedule.next() == (0, 100.75)
    schedule.done(0, 100.8, answered=True)
    assert schedule.next() == (1, 100.75)
    schedule.done(1, 100.8, answered=True)
    assert schedule.next() == (1, 101.25)  # then every interval, on its phase


def test_the_scheduler_spreads_skips_and_forgives_a_silent_device() -> None:
    schedule = PollScheduler([1.0], [0.25], begin=100.0)
    assert schedule.next() == (0, 100.25)  # on the device's own phase from the first poll
    assert schedule.done(0, 100.3, answered=True) == 0
    assert schedule.next() == (0, 101.25)
    assert schedule.done(0, 103.5, answered=True) == 2  # 102.25 and 103.25 could not start
    assert schedule.next() == (0, 104.25)
    assert schedule.done(0, 107.0, answered=False) == 0  # late because silent: no overload
    assert schedule.next() == (0, 107.25)
