"""`python -m holdem.data`: PokerBench (hub data set or local JSON/JSONL/Parquet) -> the JSONL slime
reads (`--input-key instruction --label-key output`), with `FILE.stats.json` beside it.

This module owns the command line (arguments, exit codes, SIGTERM); the run itself is
`holdem.data.stage.prepare`. The chain's `data` stage runs this command; the plan asks
`cluster.outputs.check_jsonl` whether the stage can be skipped.

Exit codes: 0 ok, 2 bad input or usage (one `error:` line), 1 an unexpected failure while writing.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cluster.outputs import stats_path_for

from holdem.data.source import DataInputError
from holdem.data.stage import DataSpec, UsageError, prepare
from holdem.data.stats import render_summary

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
    ns = p.parse_args(argv)
    return DataSpec(**vars(ns))


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (scancel, a Slurm time limit) unwinds like Ctrl-C, so the temp file is removed.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    spec = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        stats = prepare(spec)
    except (DataInputError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    print(render_summary(stats))
    print(f"wrote {spec.out} and {stats_path_for(spec.out).name}")
    return 0
