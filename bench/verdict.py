"""What every benchmark ends with: the problems it found printed as `error:` lines, and its exit
code (1 when the script or what it measures broke, 0 otherwise; never a verdict on a time)."""
from __future__ import annotations

import sys


def verdict(problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
