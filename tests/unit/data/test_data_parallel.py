"""The data stage on all cores (issue 16, item 3): the output is byte-identical whatever the number
of workers, streaming and ordered; and the readers never raise on arbitrary bytes (Hypothesis)."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdem.data import DataSpec, prepare, stats_path_for
from holdem.data import source as data_source
from holdem.data.source import DataInputError, InvalidRow, decode_line, iter_rows, resolve_source
from holdem.data.validate import BadRow, GoodRow, check_row
from holdem.data.work import BatchRunner, ROWS, process_rows, render_line
from holdem.pokerbench import parse_instruction

from .helpers import ROOT, generated_rows, real_rows

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(tmp_path: Path, src: Path, workers: int, name: str, *flags: str, **kw) -> tuple[bytes, dict]:
    out = tmp_path / f"{name}.jsonl"  # the same path for every run: stats name it
    spec = DataSpec(source=str(src), split="train", out=out, workers=workers, progress_interval_s=3600, **kw)
    stats = prepare(spec)
    return out.read_bytes(), {k: v for k, v in stats.items() if k != "seconds"}


def mixed_input(tmp_path: Path, monkeypatch) -> Path:
    """Many small batches with duplicates, conflicts and bad rows spread over them."""
    monkeypatch.setattr(data_source, "_BATCH_BYTES", 20_000)
    rows = generated_rows(600, seed=11)
    lines = [json.dumps(r) for r in rows]
    lines += lines[::7]  # duplicates, later in the file
    lines += [json.dumps({**rows[3], "output": "fold" if rows[3]["output"] != "fold" else "call"})]  # a conflict
    lines[100:100] = ["{oops", "", "42", json.dumps({**rows[0], "output": "Raise 3"})]  # bad rows and a blank line
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


@pytest.mark.parametrize("flags", [
    {"on_bad_row": "skip"},
    {"on_bad_row": "skip", "drop_duplicates": True, "drop_conflicts": True},
])
def test_output_and_stats_identical_for_any_number_of_workers(tmp_path, monkeypatch, flags):
    src = mixed_input(tmp_path, monkeypatch)
    one = run(tmp_path, src, 1, "a", **flags)
    for workers in (2, 3, 5):
        assert run(tmp_path, src, workers, "a", **flags) == one, workers
    data, stats = one
    assert stats["bad_rows_by_reason"] == {"invalid_json": 1, "not_an_object": 1, "label_grammar": 1}
    assert data.count(b"\n") == stats["rows_out"]


def test_fail_mode_stops_at_the_same_row_for_any_number_of_workers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_source, "_BATCH_BYTES", 5_000)
    rows = generated_rows(300, seed=12)
    lines = [json.dumps(r) if i % 13 else "{bad" for i, r in enumerate(rows)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    messages = []
    for workers in (1, 2, 4):
        with pytest.raises(DataInputError) as failed:
            prepare(DataSpec(source=str(src), split="train", out=tmp_path / "o.jsonl", workers=workers,
                             progress_interval_s=3600))
        messages.append(str(failed.value))
    assert messages[0] == messages[1] == messages[2]
    assert "stopped reading at 10 bad row(s)" in messages[0] and "in.jsonl:118" in messages[0]
    assert not (tmp_path / "o.jsonl").exists() and list(tmp_path.glob(".o.jsonl*")) == []


def test_render_line_is_json_dumps():
    for row in real_rows() + [{"instruction": 'é€😀 "\\\n\t\u2028', "output": "call"}]:
        expected = json.dumps({"instruction": row["instruction"], "output": row["output"]}, ensure_ascii=False)
        assert render_line(row["instruction"], row["output"]) == expected


def test_a_progress_bar_on_a_terminal(tmp_path):
    """stderr on a pseudo-terminal: the bar is redrawn in place with `\\r`, then ends its line."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in generated_rows(300, seed=13)))
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "holdem.data", "--source", str(src), "--out",
                             str(tmp_path / "o.jsonl"), "--progress-interval", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
    proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, seen
    assert b"\r[" in seen and b"100.0%" in seen and b"rows/s" in seen, seen


# ---- Hypothesis: the readers and the validator never raise on anything ------------------------

@SETTINGS
@given(st.binary(max_size=300))
def test_decode_line_never_raises(raw):
    value = decode_line(raw)
    assert isinstance(value, InvalidRow) or value is None or isinstance(value, (dict, list, str, int, float, bool))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)


@SETTINGS
@given(JSON, st.sampled_from(["instruction", "output", "other"]))
def test_check_row_never_raises(value, key):
    real = real_rows()[0]
    for obj in (value, {key: value}, {**real, key: value}):
        checked = check_row(obj, parse_instruction)
        assert isinstance(checked, (GoodRow, BadRow))


@SETTINGS
@given(st.lists(st.binary(max_size=60), max_size=30), st.sampled_from([".jsonl", ".json"]))
def test_readers_yield_rows_or_one_input_error(tmp_path_factory, chunks, suffix):
    """Any bytes: JSONL gives one row per non-blank line (never an exception); a JSON array either
    parses or is one DataInputError."""
    path = tmp_path_factory.mktemp("h") / f"in{suffix}"
    data = b"\n".join(chunks)
    if suffix == ".json":
        data = b"[" + data
    path.write_bytes(data)
    try:
        rows = list(iter_rows(resolve_source(str(path), "train")))
    except DataInputError:
        return
    if suffix == ".jsonl" and not data.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" not in data[:4]:
        body = data.removeprefix(b"\xef\xbb\xbf")
        assert len(rows) == sum(1 for line in body.split(b"\n") if line.strip())


@SETTINGS
@given(st.lists(st.sampled_from(real_rows()) | st.builds(dict) | st.just("junk"), max_size=40),
       st.integers(min_value=1, max_value=4))
def test_parallel_results_equal_in_process_results(rows, workers):
    batch = data_source.LineBatch("x.jsonl", 1, b"".join(
        (json.dumps(r) if not isinstance(r, str) else r).encode() + b"\n" for r in rows))
    expected = process_rows(batch, parse_instruction)
    with BatchRunner(workers, parse_instruction) as runner:
        got = list(runner.map(ROWS, [batch, None, batch]))
    assert [g.data for g in got] == [expected.data, expected.data]
    assert [g.bad for g in got] == [expected.bad, expected.bad]


def test_stats_file_written_last_and_complete(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in real_rows()))
    data, stats = run(tmp_path, src, 2, "s")
    assert json.loads(stats_path_for(tmp_path / "s.jsonl").read_text())["rows_out"] == 6 == stats["rows_out"]
