"""The data stage's run: read a PokerBench source, validate and filter every row, write the JSONL
and its stats atomically (`prepare`). The command line around it is `holdem.data.cli`.

Importing this module stays cheap: `datasets`/`pyarrow` load only when a source needs them.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.outputs import stats_path_for

from holdem import pokerbench
from holdem.data.filters import LabelIndex, RowFilter, text_key
from holdem.data.output import JsonlWriter, remove_stale_temps
from holdem.data.progress import ProgressReporter
from holdem.data.source import DataInputError, Progress, SourceSpec, iter_rows, resolve_source
from holdem.data.stats import MAX_BAD_EXAMPLES, RunCounts
from holdem.data.validate import BadRow, InstructionParser, check_row, label_kind


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


def prepare(spec: DataSpec, parse_instruction: InstructionParser | None = None) -> dict:
    """Run the data stage; returns the stats written. Raises DataInputError / UsageError."""
    check_spec(spec)
    for target in (spec.out, stats_path_for(spec.out)):
        remove_stale_temps(target)
    source = resolve_source(spec.source, spec.split)
    started = time.monotonic()
    parser = parse_instruction or pokerbench.parse_instruction
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
