"""Streaming readers: every input form yields the same rows, and broken inputs fail as a whole."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from holdem.data import source as data_source
from holdem.data.source import DataInputError, InvalidJson, Progress, iter_rows, resolve_source

from .helpers import write_jsonl


def read_all(source: str, split: str = "train") -> list[object]:
    return [obj for _, obj in iter_rows(resolve_source(source, split))]


def test_jsonl_json_array_and_parquet_yield_the_same_rows(tmp_path, examples):
    write_jsonl(tmp_path / "a.jsonl", examples)
    (tmp_path / "b.json").write_text(json.dumps(examples, indent=2), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(examples), tmp_path / "c.parquet")
    for name in ("a.jsonl", "b.json", "c.parquet"):
        assert read_all(str(tmp_path / name)) == examples, name


def test_json_array_survives_chunk_boundaries_inside_rows_and_characters(tmp_path, monkeypatch, examples):
    rows = [dict(r, output=r["output"]) for r in examples] + [{"instruction": "é€😀 " * 50, "output": "call"}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    # A 7-byte window splits every row and several multi-byte characters.
    monkeypatch.setattr(data_source, "_JSON_CHUNK", 7)
    assert read_all(str(path)) == rows


def test_where_names_line_or_index(tmp_path, examples):
    write_jsonl(tmp_path / "a.jsonl", examples[:2])
    (tmp_path / "b.json").write_text(json.dumps(examples[:2]), encoding="utf-8")
    assert [w for w, _ in iter_rows(resolve_source(str(tmp_path / "a.jsonl"), "train"))] == ["a.jsonl:1", "a.jsonl:2"]
    assert [w for w, _ in iter_rows(resolve_source(str(tmp_path / "b.json"), "train"))] == ["b.json#0", "b.json#1"]


def test_jsonl_bad_line_is_one_bad_row_not_a_failure(tmp_path, examples):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(examples[0]) + "\n{not json\n\n" + json.dumps(examples[1]) + "\n", encoding="utf-8")
    rows = read_all(str(path))
    assert rows[0] == examples[0] and rows[2] == examples[1]
    assert isinstance(rows[1], InvalidJson)


def test_progress_reaches_all_bytes(tmp_path, examples):
    path = write_jsonl(tmp_path / "a.jsonl", examples)
    progress = Progress()
    list(iter_rows(resolve_source(str(path), "train"), progress))
    assert progress.total_units == path.stat().st_size
    assert progress.fraction() == 1.0


def test_directory_picks_files_of_the_split(tmp_path, examples):
    write_jsonl(tmp_path / "preflop_train_set.jsonl", examples[:2])
    write_jsonl(tmp_path / "postflop_train_set.jsonl", examples[2:])
    write_jsonl(tmp_path / "postflop_test_set.jsonl", examples[:1])
    (tmp_path / "notes.txt").write_text("ignored")
    assert sorted(r["output"] for r in read_all(str(tmp_path), "train")) == sorted(r["output"] for r in examples)
    assert read_all(str(tmp_path), "test") == examples[:1]
    with pytest.raises(DataInputError, match="no file for split 'validation'"):
        resolve_source(str(tmp_path), "validation")


def test_directory_without_split_names_reads_every_file(tmp_path, examples):
    write_jsonl(tmp_path / "part-0.jsonl", examples[:3])
    write_jsonl(tmp_path / "part-1.jsonl", examples[3:])
    assert read_all(str(tmp_path), "train") == examples


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(DataInputError, match="no .json/.jsonl/.parquet files"):
        resolve_source(str(tmp_path), "train")


def test_missing_path_is_an_error_but_hub_names_resolve(tmp_path):
    with pytest.raises(DataInputError, match="no such file"):
        resolve_source(str(tmp_path / "missing.jsonl"), "train")
    spec = resolve_source("RZ412/PokerBench", "train")
    assert spec.hub_name == "RZ412/PokerBench" and spec.files == ()
    assert resolve_source("hf:some/thing", "test").hub_name == "some/thing"


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataInputError, match="unreadable Parquet"):
        read_all(str(path))


def test_parquet_without_the_columns(tmp_path):
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "x", "output": "call"}]), path)
    with pytest.raises(DataInputError, match="no column 'instruction'"):
        read_all(str(path))


@pytest.mark.parametrize("text, problem", [("[{\"a\": 1} {\"b\": 2}]", "expected ','"),
                                           ("[{\"a\": 1},", "not closed"),
                                           ("[{\"a\": 1", "malformed JSON array")])
def test_malformed_json_array(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataInputError, match=problem):
        read_all(str(path))


def test_hub_route_goes_through_datasets_load_dataset(tmp_path, examples, monkeypatch):
    # Offline: load_dataset reads a local data directory, the same code path a hub name takes.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "hub"
    data.mkdir()
    write_jsonl(data / "train.jsonl", examples)
    spec = resolve_source(f"hf:{data}", "train")
    progress = Progress()
    rows = [obj for _, obj in iter_rows(spec, progress)]
    assert rows == examples
    assert progress.fraction() == 1.0
    with pytest.raises(DataInputError, match="load_dataset failed"):
        list(iter_rows(resolve_source(f"hf:{data}", "no_such_split")))
