"""The data stage's run: read a PokerBench source, validate and filter every row, write the JSONL
and its stats atomically (`prepare`). The command line around it is `holdem.data.cli`.

Rows are validated and serialised by worker processes, one per core (holdem.data.work); this
process reads the input, decides duplicates/conflicts/overlap in input order and writes, so the
output is byte-identical for any number of workers. Memory stays flat: a few batches in flight.
Importing this module stays cheap: `datasets`/`pyarrow` load only when a source needs them.
"""
from __future__ import annotations

import os
import time
from bisect import bisect_left
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.outputs import stats_path_for

from holdem import pokerbench
from holdem.data.filters import LabelIndex, RowFilter, text_key
from holdem.data.output import JsonlWriter, remove_stale_temps
from holdem.data.progress import ProgressReporter
from holdem.data.source import DataInputError, Progress, SourceSpec, iter_batches, iter_rows, resolve_source
from holdem.data.stats import MAX_BAD_EXAMPLES, RunCounts
from holdem.data.validate import InstructionParser
from holdem.data.work import LABELS, ROWS, BatchResult, BatchRunner, default_workers


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
    workers: int = 0  # processes validating rows; 0: one per available core


class UsageError(Exception):
    """A command-line combination that cannot work; reported like bad input (exit 2)."""


@dataclass
class RunState:
    """How far a run got, for the message when it is stopped (a signal, a full disk)."""

    phase: str = "starting"
    rows_read: int = 0
    rows_written: int = 0
    temp: Path | None = None
    committed: bool = False


def check_spec(spec: DataSpec) -> None:
    if spec.drop_test_overlap and not spec.test_source:
        raise UsageError("--drop-test-overlap needs --test-source FILE (the test rows to compare with)")
    if spec.workers < 0:
        raise UsageError(f"--workers {spec.workers}: must be 0 (one per core) or more")
    if spec.progress_interval_s is not None and not (0 <= spec.progress_interval_s < float("inf")):
        raise UsageError(f"--progress-interval {spec.progress_interval_s}: must be a number of seconds >= 0")
    parent = spec.out.parent
    try:
        parent_is_dir, out_is_dir = parent.is_dir(), spec.out.is_dir()
        parent_exists = parent_is_dir or parent.exists()
    except OSError as exc:
        raise UsageError(f"--out {spec.out}: cannot look at {parent} ({exc.strerror or exc}). Pick another path") from exc
    if not parent_is_dir:
        what = "is not a directory" if parent_exists else "does not exist"
        raise UsageError(f"--out {spec.out}: {parent} {what}. Create the directory first or pick another path")
    if out_is_dir:
        raise UsageError(f"--out {spec.out}: is a directory. Give a file name such as {spec.out}/train.jsonl")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {spec.out}: directory {parent} is not writable. Pick another path")


def prepare(spec: DataSpec, parse_instruction: InstructionParser | None = None,
            state: RunState | None = None) -> dict:
    """Run the data stage; returns the stats written. Raises DataInputError / UsageError (bad
    input), DataOutputError (writing failed), WorkerDied; `state` follows the run's progress."""
    state = state if state is not None else RunState()
    check_spec(spec)
    for target in (spec.out, stats_path_for(spec.out)):
        remove_stale_temps(target)
    source = resolve_source(spec.source, spec.split)
    started = time.monotonic()
    parser = parse_instruction or pokerbench.parse_instruction_once  # each prompt is parsed about once
    with BatchRunner(spec.workers or default_workers(), parser) as runner:
        state.phase = "reading the test rows"
        test_keys = load_test_keys(spec) if spec.test_source else None
        state.phase = "finding conflicting labels (first pass)"
        conflicts = find_conflicts(source, runner) if spec.drop_conflicts else None
        rows = RowFilter(spec.drop_duplicates, spec.drop_conflicts, test_keys, spec.drop_test_overlap, conflicts)
        counts = RunCounts()
        progress = Progress()
        reporter = ProgressReporter(f"data {source.label}", progress.fraction, interval_s=spec.progress_interval_s)
        with JsonlWriter(spec.out) as writer:
            state.phase, state.temp = "writing", writer.temp
            try:
                for result in runner.map(ROWS, iter_batches(source, progress)):
                    stop = merge_batch(result, spec.on_bad_row == "fail", rows, counts, writer)
                    state.rows_read, state.rows_written = counts.rows_in, writer.rows_written
                    reporter.tick(counts.rows_in)
                    if stop:
                        break
                _raise_if_unusable(spec, source, counts, writer.rows_written)
            except BaseException:
                reporter.abandon()
                raise
            reporter.close(counts.rows_in)
            state.phase = "committing"
            stats = writer.commit(_stats(spec, source, counts, rows, time.monotonic() - started))
            state.committed = True
    return stats


def merge_batch(result: BatchResult, fail_fast: bool, rows: RowFilter, counts: RunCounts,
                writer: JsonlWriter) -> bool:
    """Fold one worker result into the run, in input order: count bad rows, decide each good row
    (duplicates, conflicts, test overlap), append the kept lines. Returns True when the run must
    stop reading (the bad-row limit of --on-bad-row fail was reached in this batch)."""
    bad, cutoff, stop = result.bad, result.n_rows, False
    if bad and fail_fast:
        room = MAX_BAD_EXAMPLES - len(counts.bad_examples)
        if len(bad) >= room:
            bad, stop = bad[:room], True
            cutoff = bad[-1][0] + 1  # rows after the last reported one are not read
    for _, where, reason, detail in bad:
        counts.add_bad(where, reason, detail)
    counts.rows_in += cutoff
    n_good = bisect_left(result.good_pos, cutoff)
    kept, dropped = counts.kept, counts.dropped
    street_kind, ends = result.street_kind, result.ends
    data = memoryview(result.data)
    reasons = rows.decide_many(result.ikeys, result.lkeys, n_good)
    if reasons is None:  # every good row is kept (the usual batch): one write
        if n_good:
            kept.update(street_kind[:n_good])
            writer.write_lines(data[:ends[n_good - 1]], n_good)
        return stop
    seg_from = start = seg_rows = 0
    for j in range(n_good):
        reason = reasons[j]
        if reason is None:
            kept[street_kind[j]] += 1
            seg_rows += 1
        else:
            dropped[reason] += 1
            if seg_rows:
                writer.write_lines(data[seg_from:start], seg_rows)
            seg_from, seg_rows = ends[j], 0
        start = ends[j]
    if seg_rows:
        writer.write_lines(data[seg_from:start], seg_rows)
    return stop


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
    options.pop("workers")  # how, not what: the output is the same for any number
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
            try:
                keys.add(text_key(obj["instruction"]))
            except UnicodeEncodeError:
                continue
    if not keys:
        raise DataInputError(f"--test-source {spec.test_source}: no row with an 'instruction'. Check the file")
    return keys


def find_conflicts(source: SourceSpec, runner: BatchRunner) -> set[int]:
    """First pass: instructions that occur with two or more distinct (grammatical) labels."""
    index = LabelIndex()
    add = index.add
    for ikeys, lkeys in runner.map(LABELS, iter_batches(source)):
        for ikey, lkey in zip(ikeys, lkeys):
            add(ikey, lkey)
    return index.conflicted
