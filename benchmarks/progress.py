"""A small progress bar on stderr (no dependency); plain lines when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("connect", total) as p: p.update(done)``; redraws at most 5 times/s."""

    def __init__(
        self, label: str, total: float, unit: str = "", stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._done = 0.0
        self._extra = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: float, extra: str = "", *, force: bool = False) -> None:
        self._done = done
        self._extra = extra
        now = time.monotonic()
        if force or now - self._last_draw >= (0.2 if self.tty else 5.0):
            self._last_draw = now
            self._draw(end="\r" if self.tty else "\n")

    def _draw(self, end: str) -> None:
        frac = min(1.0, max(0.0, self._done / self.total))
        width = 28
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self.t0
        done = f"{self._done:,.0f}/{self.total:,.0f}{self.unit}"
        line = f"{self.label:<22} [{bar}] {frac * 100:5.1f}% {done} {elapsed:6.1f}s {self._extra}"
        self.stream.write(line[:160].ljust(100 if self.tty else 0) + end)
        self.stream.flush()

    def close(self) -> None:
        self._draw(end="\n")
