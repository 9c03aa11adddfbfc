"""Shared command-line plumbing: one `error:` line and an exit code instead of a traceback."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from cluster.errors import EXIT_CONFIG, EXIT_INFRA, ConfigError, HoldemClusterError

DEBUG_ENV = "HOLDEM_DEBUG"  # set to 1 to get the traceback of an unexpected error


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `error:` line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _say(f"error: {self.prog}: {message}. See {self.prog} --help.")
        raise SystemExit(EXIT_CONFIG)


def _say(text: str) -> None:
    """One line on stderr, whatever it contains (undecodable file names included)."""
    stream = sys.stderr
    encoding = getattr(stream, "encoding", None) or "utf-8"
    text = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):  # stderr closed: nothing left to tell
        pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main`, mapping our typed errors to `error: ...` and their exit codes. Configuration
    errors are always one line. Nothing escapes as a traceback: an OS error is reported with its
    file, anything unexpected as an internal error (HOLDEM_DEBUG=1 re-raises it)."""
    for stream in (sys.stdout, sys.stderr):
        try:  # paths with undecodable bytes print escaped instead of failing
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    try:
        return main(argv)
    except ConfigError as exc:
        _say(f"error: {_one_line(str(exc))}")
        return exc.exit_code
    except HoldemClusterError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _say(f"interrupted: {_one_line(str(exc))}" if str(exc) else "interrupted")
        return 130
    except BrokenPipeError:  # e.g. `| head`: the reader left; say nothing more
        _silence_stdout()
        return 141
    except OSError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"error: {where}{exc.strerror or _one_line(str(exc))} (while {_doing(exc)}).")
        return EXIT_INFRA
    except Exception as exc:  # noqa: BLE001 - the contract: never a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        _say(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))[:300]}. This is a bug in "
             f"holdem-cluster, please report it with the command line; {DEBUG_ENV}=1 shows the traceback.")
        return EXIT_INFRA


def _doing(exc: OSError) -> str:
    return "writing or reading a file" if exc.filename else "talking to the system"


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
