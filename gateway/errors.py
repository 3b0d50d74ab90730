"""The gateway's exception tree.

    GatewayError
     ├── ConfigError          bad configuration; carries every problem with its field path
     ├── ConnectorError       a device cannot be reached or answered nonsense
     └── SinkError            a sink refused a write for good (bad credentials, bad data)
          └── RetryableSinkError   transient trouble: the runtime keeps the batch and retries

Library exceptions are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConnectorError",
    "GatewayError",
    "RetryableSinkError",
    "SinkError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    """Where the problem is, e.g. ``devices[2].groups[0].tags[5].data_type``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(GatewayError):
    def __init__(self, problems: list[ConfigProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{head}{len(problems)} configuration error(s)\n{lines}")


class ConnectorError(GatewayError):
    """The device is unreachable or its connection broke; the supervisor backs off and retries."""


class SinkError(GatewayError):
    """A write failed and retrying the same data will not help."""


class RetryableSinkError(SinkError):
    """A write failed for a reason that may pass (outage, timeout, throttling)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
