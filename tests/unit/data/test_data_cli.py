"""`python -m holdem.data` as the chain runs it: a real subprocess on real and generated
PokerBench rows, every bad input of issue 8, the drop options and the stats file."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from holdem.data import output_is_complete, stats_path_for
from holdem.pokerbench import parse_instruction

from .helpers import EXAMPLES, generated_rows, run_module, write_jsonl


def run_data(*args: str):
    return run_module("holdem.data", *args)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_bad_input(result, out: Path, *needles: str) -> str:
    """Exit 2, exactly one stderr line (starting `error:`), no traceback, nothing written."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not stats_path_for(out).exists()
    if out.parent.is_dir():
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    return lines[0]


def test_real_rows_pass_through_unchanged(tmp_path, examples):
    out = tmp_path / "train.jsonl"
    result = run_data("--source", str(EXAMPLES), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert read_jsonl(out) == examples
    stats = json.loads(stats_path_for(out).read_text())
    assert stats["rows_in"] == stats["rows_out"] == 6
    assert stats["by_street"] == {"preflop": 2, "flop": 1, "turn": 1, "river": 2}
    assert stats["by_action"] == {"raise": 2, "check": 1, "bet": 1, "fold": 1, "call": 1}
    assert stats["dropped"] == {}
    assert output_is_complete(out) == (True, output_is_complete(out)[1])
    assert "rows in 6" in result.stdout and "preflop" in result.stdout


@pytest.mark.parametrize("form", ["jsonl", "json", "parquet", "dir"])
def test_generated_rows_in_every_input_form(tmp_path, form):
    rows = generated_rows(1500, seed=8)
    src = tmp_path / "src"
    src.mkdir()
    if form == "jsonl":
        path = write_jsonl(src / "rows.jsonl", rows)
    elif form == "json":
        path = src / "rows.json"
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    elif form == "parquet":
        path = src / "rows.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=400)
    else:
        write_jsonl(src / "postflop_train.jsonl", rows[:700])
        write_jsonl(src / "preflop_train.jsonl", rows[700:])
        write_jsonl(src / "postflop_test.jsonl", rows[:5])
        path = src
    out = tmp_path / "out.jsonl"
    result = run_data("--source", str(path), "--split", "train", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = read_jsonl(out)
    expected = rows if form != "dir" else rows[:700] + rows[700:]
    # Directory files are read in name order: postflop_train, then preflop_train.
    assert written == expected
    stats = json.loads(stats_path_for(out).read_text())
    streets: dict[str, int] = {}
    for row in rows:
        street = parse_instruction(row["instruction"]).street
        streets[street] = streets.get(street, 0) + 1
    assert stats["by_street"] == streets
    assert stats["rows_out"] == len(rows)
    assert output_is_complete(out, verify_checksum=True)[0]


def test_drop_options_and_their_counts(tmp_path, examples):
    conflict = {"instruction": examples[1]["instruction"], "output": "raise 3.0"}
    src = write_jsonl(tmp_path / "train.jsonl", examples + [examples[0], conflict])
    test = write_jsonl(tmp_path / "test.jsonl", [examples[2]])
    out = tmp_path / "report.jsonl"
    result = run_data("--source", str(src), "--out", str(out), "--test-source", str(test))
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path_for(out).read_text())
    assert stats["rows_out"] == 8
    assert stats["found"] == {"duplicate_rows": 1, "conflicting_instructions": 1, "test_overlap_rows": 1}

    out = tmp_path / "clean.jsonl"
    result = run_data("--source", str(src), "--out", str(out), "--test-source", str(test),
                      "--drop-duplicates", "--drop-conflicts", "--drop-test-overlap")
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path_for(out).read_text())
    # examples[2] is in the test set, both rows of examples[1]'s instruction conflict, and the
    # second copy of examples[0] is a duplicate: 8 - 1 - 2 - 1 = 4 rows remain.
    assert stats["dropped"] == {"test_overlap": 1, "conflicting_label": 2, "duplicate": 1}
    assert read_jsonl(out) == [examples[0], examples[3], examples[4], examples[5]]
    assert "test_overlap 1" in result.stdout


def test_skip_mode_drops_and_counts_bad_rows(tmp_path, examples):
    bad = [{"instruction": examples[0]["instruction"]}, {"instruction": 3, "output": "call"},
           {"instruction": examples[0]["instruction"], "output": "Raise 12"}]
    src = write_jsonl(tmp_path / "mixed.jsonl", bad[:1] + examples[:3] + bad[1:] + examples[3:])
    out = tmp_path / "out.jsonl"
    result = run_data("--source", str(src), "--out", str(out), "--on-bad-row", "skip")
    assert result.returncode == 0, result.stderr
    assert read_jsonl(out) == examples
    stats = json.loads(stats_path_for(out).read_text())
    assert stats["bad_rows_by_reason"] == {"missing_field": 1, "not_a_string": 1, "label_grammar": 1}
    assert stats["dropped"] == {"bad_row": 3}
    assert stats["bad_row_examples"][0].startswith("mixed.jsonl:1: no 'output' field")


def without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


BAD_ROWS = {
    "missing instruction": (lambda r: without(r, "instruction"), "no 'instruction' field"),
    "missing output": (lambda r: without(r, "output"), "no 'output' field"),
    "non-string output": (lambda r: {**r, "output": 12}, "'output' is int, not a string"),
    "non-string instruction": (lambda r: {**r, "instruction": ["a"]}, "'instruction' is list, not a string"),
    "label outside grammar": (lambda r: {**r, "output": "raise"}, "label 'raise' is outside"),
    "label in upper case": (lambda r: {**r, "output": "Call"}, "label 'Call' is outside"),
    "label with chips": (lambda r: {**r, "output": "bet 5 chips"}, "is outside"),
    "row not an object": (lambda r: [r["instruction"], r["output"]], "row is a JSON list"),
    "instruction that does not parse": (lambda r: {**r, "instruction": "\n\nhello"}, "instruction does not parse"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_each_bad_row_fails_with_its_index_and_reason(tmp_path, examples, case):
    make_bad, needle = BAD_ROWS[case]
    src = write_jsonl(tmp_path / "in.jsonl", examples[:2] + [make_bad(examples[0])] + examples[2:])
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    line = assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "in.jsonl:3", needle)
    assert "--on-bad-row skip" in line


def test_fail_mode_shows_the_first_ten_reasons(tmp_path, examples):
    rows = [{"instruction": examples[0]["instruction"], "output": f"raise{i}"} for i in range(15)]
    src = write_jsonl(tmp_path / "in.jsonl", examples + rows)
    out = tmp_path / "out.jsonl"
    line = assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "stopped reading at 10 bad row(s)")
    assert line.count("is outside") == 10
    assert "in.jsonl:7" in line and "in.jsonl:16" in line and "in.jsonl:17" not in line


def test_invalid_json_line_is_a_bad_row(tmp_path, examples):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(examples[0]) + "\n{oops\n")
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "in.jsonl:2", "not valid JSON")


def test_missing_file(tmp_path):
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(tmp_path / "nope.jsonl"), "--out", str(out)), out, "no such file")


def test_unreadable_parquet(tmp_path):
    src = tmp_path / "broken.parquet"
    src.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "unreadable Parquet")


def test_parquet_without_output_column(tmp_path, examples):
    src = tmp_path / "cols.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": r["instruction"]} for r in examples]), src)
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "no column 'output'")


@pytest.mark.parametrize("content", ["", "\n\n", "[]", "[\n]\n"])
def test_empty_input(tmp_path, content):
    src = tmp_path / "empty.json"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "holds no rows")


def test_malformed_json_array(tmp_path, examples):
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(examples)[:-40])
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(src), "--out", str(out)), out, "malformed JSON array after 5 rows")


def test_output_in_missing_directory(tmp_path):
    out = tmp_path / "no" / "such" / "train.jsonl"
    assert_bad_input(run_data("--source", str(EXAMPLES), "--out", str(out)), out, "does not exist")


def test_every_row_filtered_out_is_an_error(tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_data("--source", str(EXAMPLES), "--out", str(out), "--test-source", str(EXAMPLES),
                      "--drop-test-overlap")
    assert_bad_input(result, out, "no row left to write", "test_overlap")


def test_drop_test_overlap_needs_a_test_source(tmp_path):
    out = tmp_path / "out.jsonl"
    assert_bad_input(run_data("--source", str(EXAMPLES), "--out", str(out), "--drop-test-overlap"), out,
                     "--test-source")


def test_unknown_hub_name_offline_is_bad_input(tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_data("--source", "no-such-owner/no-such-set", "--out", str(out))
    assert_bad_input(result, out, "load_dataset failed")


def test_importing_holdem_data_stays_light():
    code = ("import sys, holdem.data; heavy = [m for m in ('datasets', 'pyarrow', 'pandas', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    result = run_module_code(code)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def run_module_code(code: str):
    import subprocess
    import sys

    from .helpers import ROOT
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
