"""`output_is_complete`: the data stage's view of `cluster.outputs.check_jsonl`, the one rule the
job plan also uses to skip the data stage."""
from __future__ import annotations

import json

from cluster.outputs import check_jsonl, jsonl_stats
from holdem.data import DataSpec, output_is_complete, prepare, stats_path_for
from holdem.pokerbench import parse_instruction

from .helpers import EXAMPLES


def make_output(tmp_path):
    out = tmp_path / "train.jsonl"
    prepare(DataSpec(source=str(EXAMPLES), split="train", out=out), parse_instruction)
    return out


def test_complete_pair(tmp_path):
    out = make_output(tmp_path)
    ok, reason = output_is_complete(out)
    assert ok and "6 rows" in reason
    assert output_is_complete(str(out), verify_checksum=True)[0]


def test_missing_output_or_stats(tmp_path):
    assert output_is_complete(tmp_path / "train.jsonl") == (False, f"{tmp_path / 'train.jsonl'} does not exist")
    out = make_output(tmp_path)
    stats_path_for(out).unlink()
    ok, reason = output_is_complete(out)
    assert not ok and "train.stats.json is missing" in reason


def test_appended_or_truncated_output_is_incomplete(tmp_path):
    out = make_output(tmp_path)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    ok, reason = output_is_complete(out)
    assert not ok and "bytes" in reason
    out.write_bytes(data + data.splitlines(keepends=True)[0])
    assert not output_is_complete(out)[0]


def test_line_count_and_checksum_disagreement(tmp_path):
    out = make_output(tmp_path)
    data = out.read_bytes()
    # Same size, one newline fewer: caught by the line count.
    out.write_bytes(data.replace(b"}\n", b"} ", 1))
    ok, reason = output_is_complete(out)
    assert not ok and "5 lines" in reason
    # Same size and lines, one byte changed: only the checksum sees it.
    out.write_bytes(data.replace(b"raise 12.0", b"raise 13.0"))
    assert output_is_complete(out)[0]
    ok, reason = output_is_complete(out, verify_checksum=True)
    assert not ok and "sha256" in reason


def test_unreadable_stats(tmp_path):
    out = make_output(tmp_path)
    stats_path_for(out).write_text("{not json")
    ok, reason = output_is_complete(out)
    assert not ok and "unreadable" in reason
    stats_path_for(out).write_text(json.dumps({"rows_out": 6}))
    assert not output_is_complete(out)[0]


def test_stats_path_naming(tmp_path):
    assert stats_path_for(tmp_path / "a.jsonl") == tmp_path / "a.stats.json"
    assert stats_path_for(tmp_path / "a.json") == tmp_path / "a.json.stats.json"


def test_same_rule_as_the_plan(tmp_path):
    """Rows without a stats file are never complete; with matching stats they are, for both."""
    out = tmp_path / "train.jsonl"
    out.write_text('{"instruction": "x", "output": "fold"}\n' * 3)
    assert output_is_complete(out)[0] is False and check_jsonl(out)[0] is False
    stats_path_for(out).write_text(json.dumps(jsonl_stats(out)))
    assert output_is_complete(out, verify_checksum=True)[0] is True and check_jsonl(out)[0] is True


def test_rows_without_the_data_fields_are_incomplete(tmp_path):
    out = tmp_path / "train.jsonl"
    out.write_text('{"prompt": "x", "label": "fold"}\n')
    stats_path_for(out).write_text(json.dumps(jsonl_stats(out)))
    ok, reason = output_is_complete(out)
    assert not ok and "lacks instruction, output" in reason
