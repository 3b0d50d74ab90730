"""Device state, decided in one place with the same rules for every protocol.

- ``online``: every request of the last cycles was answered, without busy retries, for at least
  ``hold`` seconds;
- ``degraded``: the device answers, but some request failed, was answered busy (even if a retry
  then succeeded) or a standing problem is reported; it stays degraded until ``hold`` seconds
  pass without any, so a device busy one request in seven does not flap;
- ``offline``: its link is down (the connector raised) or not one request of a cycle got its
  values, busy answers aside (a busy device is there: it is degraded). A device back from
  offline is online at once.
"""

from __future__ import annotations

import operator

from gateway.cycle import Cycle, FailureKind
from gateway.reading import Quality
from gateway.status import DeviceState, DeviceStatus

__all__ = ["DeviceHealth"]

_ONLINE, _DEGRADED, _OFFLINE = DeviceState.ONLINE, DeviceState.DEGRADED, DeviceState.OFFLINE
_GOOD = Quality.GOOD
_quality = operator.itemgetter(3)


class DeviceHealth:
    """Turns a device's cycles and link events into its status counters and state."""

    __slots__ = ("_hold", "_troubled_until", "status")

    def __init__(self, status: DeviceStatus, hold: float) -> None:
        self.status = status
        self._hold = hold
        self._troubled_until = 0.0

    def cycle(self, cycle: Cycle, now: float) -> None:
        """Account one cycle; ``now`` is the loop's monotonic time."""
        status = self.status
        failures = cycle.failures
        status.polls += 1
        status.requests += cycle.requests
        status.request_errors += len(failures)
        status.busy_retries += cycle.retries
        if cycle.skipped:
            status.overruns += 1
            status.skipped_cycles += cycle.skipped
        if cycle.duration_s is not None:
            status.last_poll_duration_s = cycle.duration_s
        if cycle.line is not None:
            status.line = cycle.line
        if cycle.readings:
            good = list(map(_quality, cycle.readings)).count(_GOOD)  # in C: no loop per value
            status.values += good
            if good:
                status.last_good_read_ns = cycle.time_ns
        if (
            failures
            and len(failures) >= cycle.requests
            and all(f.kind is not FailureKind.BUSY for f in failures)
        ):
            status.state = _OFFLINE
            status.last_error = failures[0].reason
            self._troubled_until = now + self._hold
            return
        if failures or cycle.retries or cycle.standing:
            self._troubled_until = now + self._hold
            status.state = _DEGRADED
            if failures:
                status.last_error = failures[0].reason
            elif cycle.standing:
                status.last_error = cycle.standing
            else:
                status.last_error = (
                    f"device busy: {cycle.retries} request(s) answered only after a retry"
                )
            return
        if status.state is _DEGRADED and now < self._troubled_until:
            return
        status.state = _ONLINE
        status.last_error = None

    def connected(self) -> None:
        self.status.connects += 1

    def link_down(self, reason: str, now: float) -> None:
        """The connection failed or was lost: the supervisor reconnects after a backoff."""
        status = self.status
        status.reconnects += 1
        status.state = _OFFLINE
        status.last_error = reason
        self._troubled_until = now + self._hold
