"""Real servers and simulators as child processes, and polling with deadlines instead of sleeps.

Every process is stopped by its PID (SIGTERM, then SIGKILL); output goes to files so a failing
test can show it and ``wait_for_line`` can wait for a readiness message.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = [
    "ManagedProcess",
    "async_wait_until",
    "free_port",
    "port_accepts",
    "wait_port",
    "wait_until",
]

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    message: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises TimeoutError naming ``message`` (a string, or a callable for details known only at
    the deadline, such as the output of a process).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not met within {timeout} s: {_text(message)}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T | None] | None],
    timeout: float = 10.0,  # noqa: ASYNC109 (a polling deadline, like wait_until's)
    message: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.02,
) -> T:
    """``wait_until`` for async tests: sleeps without blocking the event loop.

    The predicate may be a plain function or return an awaitable.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not met within {timeout} s: {_text(message)}")
        await asyncio.sleep(interval)


def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until a TCP connection to ``host:port`` is accepted."""
    wait_until(
        lambda: port_accepts(host, port), timeout, message=f"{host}:{port} accepts connections"
    )


class ManagedProcess:
    """A child process with its stdout and stderr in files under ``workdir``.

    ``start()`` may be called again after ``stop()``/``kill()`` (same argv, output appended),
    which is how restart tests bring a server back on the same port.
    """

    def __init__(
        self,
        argv: Sequence[str],
        workdir: Path,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        merge_stderr: bool = False,
    ) -> None:
        """``env`` is added to this process's environment; PYTHONUNBUFFERED=1 is set so that
        Python children write their lines as they go. ``merge_stderr`` sends stderr to the
        stdout file, for servers that log to stderr (unbuffered, unlike a redirected stdout)."""
        self.argv = list(argv)
        self.name = name or Path(argv[0]).name
        self.cwd = cwd
        self.merge_stderr = merge_stderr
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{self.name}.stdout"
        self.stderr_path = workdir / f"{self.name}.stderr"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def start(self) -> ManagedProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._popen = subprocess.Popen(
                self.argv, stdout=out, stderr=out if self.merge_stderr else err,
                stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
            )  # fmt: skip
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return self.returncode
        popen.send_signal(signal.SIGTERM)
        popen.send_signal(signal.SIGCONT)  # a suspended process acts on SIGTERM only when resumed
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL now (a crash, as far as peers can tell). Returns the exit code."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return self.returncode
        popen.kill()
        return popen.wait(10.0)

    def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` (e.g. SIGINT, as Ctrl-C would) without waiting."""
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit by itself; its exit code."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running after {timeout} s") from None

    def suspend(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing (a hung server)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``suspend()``."""
        os.kill(self.pid, signal.SIGCONT)

    def output(self) -> str:
        """Everything written to stdout so far (across restarts)."""
        return _read(self.stdout_path)

    def errors(self) -> str:
        """Everything written to stderr so far."""
        return _read(self.stderr_path)

    def mark(self) -> int:
        """The current length of stdout, to wait for lines written after this point."""
        return self.stdout_path.stat().st_size if self.stdout_path.exists() else 0

    def wait_for_line(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, since: int = 0
    ) -> re.Match[str]:
        """Wait for a stdout line matching ``pattern`` (``re.search``), written after byte
        offset ``since`` (see ``mark()``). Fails at once if the process exits first."""
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            with self.stdout_path.open("rb") as out:
                out.seek(since)
                text = out.read().decode(errors="replace")
            complete = text[: text.rfind("\n") + 1]
            for line in complete.splitlines():
                match = regex.search(line)
                if match:
                    return match
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited ({self.returncode}) before printing "
                    f"{regex.pattern!r}\n{self.describe()}"
                )
            return None

        return wait_until(
            find,
            timeout,
            message=lambda: f"{self.name} printed {regex.pattern!r}\n{self.describe()}",
        )

    def describe(self, lines: int = 20) -> str:
        """The tail of stdout and stderr, for failure messages."""
        out = "\n".join(self.output().splitlines()[-lines:])
        err = "\n".join(self.errors().splitlines()[-lines:])
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{err}"

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _text(message: str | Callable[[], str]) -> str:
    return message if isinstance(message, str) else message()
