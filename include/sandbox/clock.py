"""Simulated time: AWS's 'now' inside the sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta


class SimulatedClock:
    """Starts at `start` and runs `speed` simulated seconds per real second; tests may jump it ahead."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        self._start = start or datetime.now(UTC).replace(microsecond=0)
        self._speed = speed
        self._origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()
        self._pinned = threading.local()  # per thread: the moment an event being replayed happens at

    def now(self) -> datetime:
        pinned: datetime | None = getattr(self._pinned, "at", None)
        if pinned is not None:
            return pinned
        with self._lock:
            elapsed = (time.monotonic() - self._origin) * self._speed + self._offset
        return self._start + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump ahead, as if that much simulated time had passed."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    @contextmanager
    def pinned(self, at: datetime) -> Iterator[None]:
        """In this thread only, `now()` is `at` (catching up on simulated events that fell due in the past)."""
        previous = getattr(self._pinned, "at", None)
        self._pinned.at = at
        try:
            yield
        finally:
            self._pinned.at = previous

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def start(self) -> datetime:
        """The simulated time the clock started at (scenario times relative to the start are based on it)."""
        return self._start
