"""Applies the desired configuration pushed to this gateway and reports how it went.

The report (``{prefix}/{gateway}/config/reported``, retained) is what a fleet view shows::

    {"version": 7, "fingerprint": "…", "state": "in_sync" | "failed",
     "applied_version": 6, "errors": [{"path": "devices[2].port", "message": "…"}],
     "changes": {"devices_added": 1, …}, "devices": 42, "ts": 1764500000000}

A document is applied whole or not at all (see ControlPlane.reconcile); the same document
again (the broker redelivers the retained one at every reconnect) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from gateway.control import ControlPlane
from gateway.errors import ConfigError, GatewayError
from gateway.fleet.desired import fingerprint, parse_desired

__all__ = ["ConfigAgent"]

log = logging.getLogger(__name__)


class ConfigAgent:
    def __init__(self, control: ControlPlane) -> None:
        self._control = control
        self._lock = asyncio.Lock()
        self._received = 0
        """Documents received: one that waited for the lock while a newer one came is dropped."""
        self._applied: tuple[Any, str] | None = None
        """(version, fingerprint) of the document last applied."""

    async def handle(self, payload: bytes) -> bytes | None:
        """The report on ``payload``; None for an empty one (the desired topic was cleared)."""
        if not payload:
            return None
        self._received += 1
        mine = self._received
        async with self._lock:
            if mine != self._received:
                return None  # a newer document is waiting: it is the one to apply
            return orjson.dumps(await self._apply(payload))

    async def _apply(self, payload: bytes) -> dict[str, Any]:
        report: dict[str, Any] = {"version": None, "fingerprint": None, "errors": []}
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(payload)
            if isinstance(document, dict):  # named in the report even if refused
                report["version"], report["fingerprint"] = (
                    document.get("version"),
                    fingerprint(document),
                )
        changes: dict[str, int] = {}
        try:
            desired = parse_desired(
                payload,
                self._control.plugins,
                self._control.device_adapter,
                self._control.profile_adapter,
            )
            report["version"], report["fingerprint"] = desired.version, desired.fingerprint
            if self._applied != (desired.version, desired.fingerprint):
                changes = await self._control.reconcile(desired.profiles, desired.devices)
                self._applied = (desired.version, desired.fingerprint)
                log.info(
                    "desired configuration version %s applied: %s",
                    desired.version,
                    ", ".join(f"{k} {v}" for k, v in changes.items() if v) or "no change",
                )
            state = "in_sync"
        except ConfigError as exc:
            state = "failed"
            report["errors"] = [{"path": p.path, "message": p.message} for p in exc.problems]
            log.error("desired configuration refused: %s", exc)
        except GatewayError as exc:  # a conflict
            state = "failed"
            report["errors"] = [{"path": "", "message": str(exc)}]
            log.error("desired configuration not applied: %s", exc)
        except Exception as exc:  # the registry's file (disk full): stored nothing, changed nothing
            state = "failed"
            report["errors"] = [{"path": "", "message": f"{type(exc).__name__}: {exc}"}]
            log.exception("desired configuration not applied")
        report.update(
            state=state,
            applied_version=None if self._applied is None else self._applied[0],
            changes=changes,
            devices=len(self._control.catalog),
            ts=time.time_ns() // 1_000_000,
        )
        return report
