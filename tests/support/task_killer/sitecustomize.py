"""Lets a fault scenario kill one of a gateway's core tasks from outside, as a bug in it would.

A gateway started with this folder on ``PYTHONPATH`` and ``GATEWAY_KILL_TASK`` set (a core task
name, as /healthz shows it) watches the file ``GATEWAY_KILL_FILE``: while it holds a number
N > 0, the task raises at once each time it runs, and N is counted down. Production code has no
such hook; only a process started this way has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

_TASK = os.environ.get("GATEWAY_KILL_TASK")
_FILE = os.environ.get("GATEWAY_KILL_FILE")


def _take_one(trigger: Path) -> bool:
    """One death from the trigger file, if it asks for any."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        left = int(trigger.read_text() or 0)
        if left > 0:
            trigger.write_text(str(left - 1))
            return True
    return False


def _killable(work: Callable[[], Awaitable[None]], trigger: Path) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        task = asyncio.ensure_future(work())
        try:
            while not task.done():
                if _take_one(trigger):
                    raise RuntimeError(f"killed by the fault test through {trigger}")
                await asyncio.wait({task}, timeout=0.05)
            task.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return run


def _install(name: str, trigger: Path) -> None:
    from gateway.runtime import Runtime

    core_tasks = Runtime._core_tasks

    def patched(self: Runtime) -> dict[str, Callable[[], Awaitable[None]]]:
        tasks = core_tasks(self)
        if name not in tasks:
            known = ", ".join(sorted(tasks))
            raise RuntimeError(f"GATEWAY_KILL_TASK: no core task {name!r}; there are {known}")
        tasks[name] = _killable(tasks[name], trigger)
        return tasks

    Runtime._core_tasks = patched  # type: ignore[method-assign]


if _TASK and _FILE:
    _install(_TASK, Path(_FILE))
