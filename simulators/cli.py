"""What the simulators' command lines share: argument types, --log-level, stop on signals."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

__all__ = ["add_log_level", "bounded_int", "positive_float", "stop_on_signals"]


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an int within ``[low, high]``."""

    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}..{high}")
        return value

    return convert


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=default,
        type=str.upper,
        help="stderr log level (default %(default)s)",
    )


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for a clean exit with code 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
