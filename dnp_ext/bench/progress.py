"""A dependency-free progress bar with ETA (stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Counts jobs; skipped (already done) jobs advance the bar but not the rate used for the ETA."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 28) -> None:
        self.total, self.label, self.width = total, label, width
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.skipped = 0
        self.start = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = 0.0

    def skip(self, n: int = 1) -> None:
        self.done += n
        self.skipped += n
        self._draw()

    def step(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def eta(self) -> float | None:
        worked = self.done - self.skipped
        if worked <= 0:
            return None
        return (time.monotonic() - self.start) / worked * (self.total - self.done)

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        fill = int(frac * self.width)
        eta = self.eta()
        parts = [
            f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{self.total}",
            f"{frac:4.0%}",
            f"elapsed {_hms(time.monotonic() - self.start)}",
            f"ETA {_hms(eta) if eta is not None else '?'}",
        ]
        if self.skipped:
            parts.append(f"({self.skipped} already done)")
        return " ".join(parts).strip()

    def _draw(self) -> None:
        now = time.monotonic()
        if self._tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        elif now - self._last_line >= 10 or self.done >= self.total:
            # not a terminal (CI, log file): a line every 10 s at most
            self.stream.write(self.line() + "\n")
            self._last_line = now
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
