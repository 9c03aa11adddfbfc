"""`python -m holdem.data`: PokerBench (hub data set or local JSON/JSONL/Parquet) -> the JSONL slime
reads (`--input-key instruction --label-key output`), with `FILE.stats.json` beside it.

This module owns the command line (arguments, exit codes, signals); the run itself is
`holdem.data.stage.prepare`. The chain's `data` stage runs this command; the plan asks
`cluster.outputs.check_jsonl` whether the stage can be skipped.

Exit codes: 0 ok; 2 bad input or usage (one `error:` line naming what, where and the fix); 1 the
output could not be written (a full disk, a quota, a file size limit) or a worker process died;
128+N stopped by signal N (SIGTERM: 143, Ctrl-C: 130). Whatever stops a run, the temp file is
removed and nothing is committed: a previous complete output stays as it was.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cluster.outputs import stats_path_for

from holdem.data.output import DataOutputError, OutputUnusable
from holdem.data.source import DataInputError
from holdem.data.stage import DataSpec, RunState, UsageError, prepare
from holdem.data.stats import render_summary
from holdem.data.work import WorkerDied

DEFAULT_SOURCE = "RZ412/PokerBench"


def parse_args(argv: list[str] | None) -> DataSpec:
    p = argparse.ArgumentParser(prog="python -m holdem.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help="hub data set name (hf:NAME forces the hub) or a JSON/JSONL/Parquet file or directory")
    p.add_argument("--split", default="train", help="split to read (hub) or to pick files by name (directory)")
    p.add_argument("--out", required=True, type=Path, help="output FILE.jsonl (FILE.stats.json is written beside it)")
    p.add_argument("--drop-duplicates", action="store_true", help="drop rows identical to an earlier row")
    p.add_argument("--drop-conflicts", action="store_true",
                   help="drop every row of an instruction that occurs with two or more labels (reads the input twice)")
    p.add_argument("--test-source", help="test rows (same forms as --source) to check for overlap")
    p.add_argument("--test-split", default="test")
    p.add_argument("--drop-test-overlap", action="store_true",
                   help="drop rows whose instruction occurs in --test-source")
    p.add_argument("--on-bad-row", choices=("skip", "fail"), default="fail",
                   help="fail (default): stop with the first ten reasons; skip: drop and count them")
    p.add_argument("--progress-interval", type=float, default=None, dest="progress_interval_s",
                   help="seconds between progress updates (default 0.25 on a terminal, 10 in a log)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes validating rows (default 0: one per available core; 1: no extra process)")
    ns = p.parse_args(argv)
    return DataSpec(**vars(ns))


class Interrupted(BaseException):
    """SIGTERM (scancel, a Slurm time limit) or SIGINT. A BaseException, like KeyboardInterrupt,
    so that no `except Exception` on the way (pyarrow, the parser) can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    # One signal is enough: the clean-up that follows (temp file, worker pool) must not be cut.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    spec = parse_args(argv)
    state = RunState()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = prepare(spec, state=state)
        print(render_summary(stats))
        print(f"wrote {spec.out} and {stats_path_for(spec.out).name}")
        return 0
    except (DataInputError, UsageError, OutputUnusable) as exc:
        return _fail(str(exc), 2)
    except (DataOutputError, WorkerDied) as exc:
        return _fail(str(exc), 1)
    except MemoryError:
        return _fail(f"out of memory while {state.phase} after {state.rows_read:,} rows; nothing committed. "
                     "Pass --workers 1 or run with more memory", 1)
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        return _fail(interrupted_message(signal.Signals(signum).name, spec, state), 128 + signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted_message(name: str, spec: DataSpec, state: RunState) -> str:
    if state.committed:
        return f"interrupted by {name} after {spec.out} was committed (it is complete)"
    done = f"{state.rows_read:,} rows read"
    if state.temp is not None:
        done += f", {state.rows_written:,} written to the temp file {state.temp.name}, which was removed"
    return (f"interrupted by {name} while {state.phase}: {done}; nothing committed to {spec.out} "
            "(a previous complete output is untouched). Run the command again")


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
