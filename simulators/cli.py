"""Argument types shared by the simulators' command lines."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["bounded_int", "positive_float"]


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
