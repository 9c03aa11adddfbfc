"""`python -m holdem.data`: PokerBench (hub data set or local JSON/JSONL/Parquet) -> the JSONL slime
reads (`--input-key instruction --label-key output`), with `FILE.stats.json` beside it.

The chain's `data` stage runs this command; the plan asks `output_is_complete(path)` whether the
stage can be skipped. Importing this module stays cheap: `datasets`/`pyarrow` load only when read.

Exit codes: 0 ok, 2 bad input or usage (one `error:` line), 1 an unexpected failure while writing.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from holdem.data_filters import LabelIndex, RowFilter, text_key
from holdem.data_output import JsonlWriter, output_is_complete, remove_stale_temps, stats_path_for
from holdem.data_progress import ProgressReporter
from holdem.data_source import DataInputError, Progress, SourceSpec, iter_rows, resolve_source
from holdem.data_stats import MAX_BAD_EXAMPLES, RunCounts, render_summary
from holdem.data_validate import BadRow, InstructionParser, check_row, label_kind

__all__ = ["DataSpec", "main", "output_is_complete", "prepare", "stats_path_for"]

DEFAULT_SOURCE = "RZ412/PokerBench"


@dataclass(frozen=True)
class DataSpec:
    """One data-stage run, as given on the command line."""

    source: str
    split: str
    out: Path
    drop_duplicates: bool = False
    drop_conflicts: bool = False
    test_source: str | None = None
    test_split: str = "test"
    drop_test_overlap: bool = False
    on_bad_row: str = "fail"
    progress_interval_s: float | None = None


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


class UsageError(Exception):
    """A command-line combination that cannot work; reported like bad input (exit 2)."""


def check_spec(spec: DataSpec) -> None:
    if spec.drop_test_overlap and not spec.test_source:
        raise UsageError("--drop-test-overlap needs --test-source FILE (the test rows to compare with)")
    parent = spec.out.parent
    if not parent.is_dir():
        raise UsageError(f"--out {spec.out}: directory {parent} does not exist. Create it first or pick another path")
    if spec.out.is_dir():
        raise UsageError(f"--out {spec.out}: is a directory. Give a file name such as {spec.out}/train.jsonl")


def load_instruction_parser() -> InstructionParser:
    try:
        from holdem.pokerbench import parse_instruction
    except ImportError as exc:
        raise DataInputError(
            f"holdem.pokerbench is not importable ({exc}); the data stage validates instructions with it"
        ) from exc
    return parse_instruction


def prepare(spec: DataSpec, parse_instruction: InstructionParser | None = None) -> dict:
    """Run the data stage; returns the stats written. Raises DataInputError / UsageError."""
    check_spec(spec)
    for target in (spec.out, stats_path_for(spec.out)):
        remove_stale_temps(target)
    source = resolve_source(spec.source, spec.split)
    started = time.monotonic()
    parser = parse_instruction or load_instruction_parser()
    test_keys = load_test_keys(spec) if spec.test_source else None
    conflicts = find_conflicts(source) if spec.drop_conflicts else None
    rows = RowFilter(spec.drop_duplicates, spec.drop_conflicts, test_keys, spec.drop_test_overlap, conflicts)
    counts = RunCounts()
    progress = Progress()
    reporter = ProgressReporter(f"data {source.label}", progress.fraction, interval_s=spec.progress_interval_s)
    with JsonlWriter(spec.out) as writer:
        try:
            for where, obj in iter_rows(source, progress):
                counts.rows_in += 1
                _one_row(where, obj, parser, rows, counts, writer)
                if counts.rows_in & 255 == 0:
                    reporter.tick(counts.rows_in)
                if spec.on_bad_row == "fail" and len(counts.bad_examples) >= MAX_BAD_EXAMPLES:
                    break
            _raise_if_unusable(spec, source, counts, writer.rows_written)
        except BaseException:
            reporter.abandon()
            raise
        reporter.close(counts.rows_in)
        stats = writer.commit(_stats(spec, source, counts, rows, time.monotonic() - started))
    return stats


def _one_row(where: str, obj: object, parser: InstructionParser, rows: RowFilter, counts: RunCounts,
             writer: JsonlWriter) -> None:
    checked = check_row(obj, parser)
    if isinstance(checked, BadRow):
        counts.add_bad(where, checked.reason, checked.detail)
        return
    reason = rows.decide(checked.instruction, checked.output)
    if reason is not None:
        counts.dropped[reason] += 1
        return
    counts.kept[(checked.street, checked.kind)] += 1
    writer.write_row(checked.instruction, checked.output)


def _raise_if_unusable(spec: DataSpec, source: SourceSpec, counts: RunCounts, rows_out: int) -> None:
    if counts.rows_in == 0:
        raise DataInputError(f"{source.label}: the input holds no rows. Check the file or the --split")
    if counts.bad_rows and spec.on_bad_row == "fail":
        n = sum(counts.bad_rows.values())
        scope = "stopped reading at" if n >= MAX_BAD_EXAMPLES else "found"
        raise DataInputError(
            f"{source.label}: {scope} {n} bad row(s): " + "; ".join(counts.bad_examples)
            + ". Fix the input or pass --on-bad-row skip to drop bad rows"
        )
    if rows_out == 0:
        raise DataInputError(
            f"{source.label}: no row left to write ({counts.rows_in} read, dropped: {dict(counts.dropped)}). "
            "Check the input and the drop options"
        )


def _stats(spec: DataSpec, source: SourceSpec, counts: RunCounts, rows: RowFilter, seconds: float) -> dict:
    found = dict(rows.found, conflicting_instructions=rows.conflicting_instructions())
    if spec.test_source is None:
        found.pop("test_overlap_rows")
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}
    options.pop("progress_interval_s")
    return {
        "version": 1,
        "source": source.label,
        "split": spec.split,
        "output": spec.out.name,
        "options": options,
        "found": found,
        "seconds": round(seconds, 3),
        **counts.to_json(),
    }


def load_test_keys(spec: DataSpec) -> set[int]:
    """Instruction keys of the test rows (rows without a string instruction are ignored)."""
    keys = set()
    for _, obj in iter_rows(resolve_source(spec.test_source, spec.test_split)):
        if isinstance(obj, dict) and isinstance(obj.get("instruction"), str):
            keys.add(text_key(obj["instruction"]))
    if not keys:
        raise DataInputError(f"--test-source {spec.test_source}: no row with an 'instruction'. Check the file")
    return keys


def find_conflicts(source: SourceSpec) -> set[int]:
    """First pass: instructions that occur with two or more distinct (grammatical) labels."""
    index = LabelIndex()
    for ikey, lkey in _label_keys(iter_rows(source)):
        index.add(ikey, lkey)
    return index.conflicted


def _label_keys(rows: Iterator[tuple[str, object]]) -> Iterator[tuple[int, int]]:
    for _, obj in rows:
        if isinstance(obj, dict):
            inst, out = obj.get("instruction"), obj.get("output")
            if isinstance(inst, str) and isinstance(out, str) and label_kind(out) is not None:
                yield text_key(inst), text_key(out)


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


if __name__ == "__main__":
    sys.exit(main())
