"""Progress reporting: a bar redrawn in place on a terminal, plain periodic lines in a batch log."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressReporter:
    """Call `tick(rows)` often; it redraws at most every `interval_s` (cheap between redraws)."""

    def __init__(
        self,
        label: str,
        fraction: Callable[[], float | None],
        stream: TextIO | None = None,
        interval_s: float | None = None,
        tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.label = label
        self.fraction = fraction
        self.interval_s = interval_s if interval_s is not None else (0.25 if self.tty else 10.0)
        self.start = time.monotonic()
        self._next = self.start + self.interval_s
        self._drawn = False

    def tick(self, rows: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval_s
            self._draw(rows, now)

    def close(self, rows: int) -> None:
        if self._drawn or not self.tty:
            self._draw(rows, time.monotonic(), final=True)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def abandon(self) -> None:
        """End a half-drawn bar line so an error message starts on its own line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, rows: int, now: float, final: bool = False) -> None:
        elapsed = max(now - self.start, 1e-9)
        frac = 1.0 if final else self.fraction()
        rate = rows / elapsed
        if frac is None:
            pct, eta = "", ""
        else:
            pct = f" {100 * frac:5.1f}%"
            eta = f" eta {(elapsed / frac - elapsed):.0f}s" if 0 < frac < 1 else ""
        text = f"{self.label}: {rows:,} rows{pct} {rate:,.0f} rows/s {elapsed:.0f}s{eta}"
        if self.tty:
            bar = "" if frac is None else "[" + "#" * int(24 * frac) + "." * (24 - int(24 * frac)) + "] "
            self.stream.write("\r" + bar + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = True
