"""Exponential backoff with full jitter (AWS architecture blog), reset after a success."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.attempt = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt: uniform in [min, min * 2^attempt], capped."""
        ceiling = min(self.maximum, self.minimum * (2.0 ** min(self.attempt, 32)))
        self.attempt += 1
        return random.uniform(self.minimum, ceiling)

    def reset(self) -> None:
        self.attempt = 0
