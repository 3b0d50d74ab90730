"""A private Mosquitto broker per test: free port, own config, stopped by PID.

The config follows shared/services.md: no persistence (unless asked for) and
``max_queued_messages 0`` (the default 1000 silently drops bursts to slow subscribers). The
broker's log is ``process.output()``: tests can wait for lines such as
``Client gw-1 disconnected.`` (a clean disconnect, so no last will).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.processes import ManagedProcess, free_port, port_accepts, wait_until

__all__ = ["Mosquitto", "mosquitto_binary"]

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def mosquitto_binary() -> str:
    """The mosquitto executable, or skip the test with how to install it."""
    binary = shutil.which("mosquitto", path=_SEARCH_PATH)
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
    return binary


class Mosquitto:
    """One broker on ``host:port``; ``stop()`` then ``start()`` brings it back on the same port.

    ``users`` turns on password authentication (anonymous clients are then refused).
    ``persistent`` keeps retained messages and persistent sessions (with their queued
    messages) across ``stop()``/``start()``; ``kill()`` loses what was not saved yet.
    ``extra_config`` is appended to the listener's settings (e.g. TLS ``certfile`` lines);
    files it names must be readable by the broker: see ``readable_copy``.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        persistent: bool = False,
        extra_config: str = "",
    ) -> None:
        self.port = port or free_port(self.host)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._users = dict(users or {})
        self.persistent = persistent
        self.extra_config = extra_config
        """Appended to the listener's settings at each ``start()``."""
        self._files_dir: Path | None = None
        self.config_path = workdir / "mosquitto.conf"
        self.process = ManagedProcess(
            [mosquitto_binary(), "-c", str(self.config_path)],
            workdir,
            name="mosquitto",
            merge_stderr=True,  # its log: stdout would be block-buffered in a file
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def files_dir(self) -> Path:
        """A directory the broker can read after it drops root privileges to user mosquitto.

        pytest's tmp_path sits under a 0700 root directory the broker cannot enter, so files
        the broker opens after start-up (password file, TLS files) go here instead.
        """
        if self._files_dir is None:
            self._files_dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
            _give_to_broker(self._files_dir)
        return self._files_dir

    def readable_copy(self, path: Path) -> Path:
        """Copy ``path`` into ``files_dir`` (owned by the broker's user) and return the copy."""
        copy = self.files_dir / path.name
        shutil.copyfile(path, copy)
        _give_to_broker(copy)
        return copy

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Write the config, start the broker, wait until its port accepts connections."""
        self.config_path.write_text(self._config())
        self.process.start()

        def accepting() -> bool:
            if not self.process.running:
                raise RuntimeError(f"mosquitto exited at start-up\n{self.process.describe()}")
            return port_accepts(self.host, self.port)

        wait_until(accepting, timeout, message=lambda: f"mosquitto on port {self.port}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (clients see the connection close), SIGKILL after ``timeout``."""
        self.process.stop(timeout)

    def kill(self) -> None:
        self.process.kill()

    def close(self) -> None:
        """Stop the broker and remove its private files."""
        self.process.stop()
        if self._files_dir is not None:
            shutil.rmtree(self._files_dir, ignore_errors=True)
            self._files_dir = None

    def _config(self) -> str:
        lines = ["per_listener_settings true", "max_queued_messages 0"]
        if self.persistent:  # saved on SIGTERM, restored by the next start()
            lines += ["persistence true", f"persistence_location {self.files_dir}/"]
        else:
            lines.append("persistence false")
        lines.append(f"listener {self.port} {self.host}")
        if self._users:
            lines += ["allow_anonymous false", f"password_file {self._password_file()}"]
        else:
            lines.append("allow_anonymous true")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _password_file(self) -> Path:
        path = self.files_dir / "passwords"
        path.unlink(missing_ok=True)
        for username, password in self._users.items():
            create = [] if path.exists() else ["-c"]
            subprocess.run(
                [_passwd_binary(), *create, "-b", str(path), username, password],
                check=True,
                capture_output=True,
            )
        _give_to_broker(path)
        return path

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _passwd_binary() -> str:
    binary = shutil.which("mosquitto_passwd", path=_SEARCH_PATH)
    if binary is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return binary


def _give_to_broker(path: Path) -> None:
    """Started as root, mosquitto runs as user mosquitto: hand it the file (services.md)."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return  # no such user: the broker keeps running as root
    os.chown(path, user.pw_uid, user.pw_gid)
