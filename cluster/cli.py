"""Shared command-line plumbing: one `error:` line and an exit code instead of a traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from cluster.errors import EXIT_CONFIG, HoldemClusterError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error:` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}. See {self.prog} --help.\n")
        raise SystemExit(EXIT_CONFIG)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main`, mapping our typed errors to `error: ...` and their exit codes."""
    try:
        return main(argv)
    except HoldemClusterError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
