"""Streaming row sources for the data stage: JSON, JSONL, Parquet, a directory of those, or a
Hugging Face data set through `datasets.load_dataset`.

Every source yields `(where, obj)` pairs one row at a time, where `where` names the row for error
messages (`file.jsonl:17`, `file.parquet#3`, `RZ412/PokerBench[train]#5`) and `obj` is the decoded
row (a dict for well-formed input). Nothing reads a whole file into memory; `datasets` and `pyarrow`
are imported only when a Parquet file or a hub data set is actually read.
"""
from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")
REQUIRED_FIELDS = ("instruction", "output")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_JSON_CHUNK = 1 << 20
_SNIFF = 64
_PARQUET_BATCH = 4096


class DataInputError(Exception):
    """The input as a whole cannot be read (missing, unreadable, malformed beyond one row)."""


@dataclass(frozen=True)
class SourceSpec:
    """What `--source` resolved to: local files (in read order) or a hub data set name."""

    label: str
    files: tuple[Path, ...] = ()
    hub_name: str | None = None
    split: str = "train"


class Progress:
    """A mutable fraction-done counter that sources update and the progress reporter reads."""

    def __init__(self) -> None:
        self.done_units = 0
        self.total_units = 0

    def fraction(self) -> float | None:
        if self.total_units <= 0:
            return None
        return min(1.0, self.done_units / self.total_units)


def resolve_source(source: str, split: str) -> SourceSpec:
    """Decide whether `source` is a local file/directory or a hub data set (pure, no reads)."""
    if source.startswith("hf:"):
        return SourceSpec(label=f"{source[3:]}[{split}]", hub_name=source[3:], split=split)
    path = Path(source)
    if path.is_dir():
        return SourceSpec(label=source, files=_files_in_dir(path, split), split=split)
    if path.exists():
        return SourceSpec(label=source, files=(path,), split=split)
    if _HUB_NAME.fullmatch(source) and not source.endswith(DATA_SUFFIXES):
        return SourceSpec(label=f"{source}[{split}]", hub_name=source, split=split)
    raise DataInputError(
        f"{source}: no such file or directory. Pass an existing JSON/JSONL/Parquet file or "
        "directory, or a Hugging Face data set name such as RZ412/PokerBench"
    )


def _files_in_dir(path: Path, split: str) -> tuple[Path, ...]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise DataInputError(
            f"{path}: directory holds no .json/.jsonl/.parquet files. Point --source at a data file "
            "or a directory of them"
        )
    named = [p for p in files if _split_word(p.name, split)]
    if named:
        return tuple(named)
    if any(_split_word(p.name, w) for p in files for w in SPLIT_WORDS):
        # Files are named by split but none by this one: reading all would mix splits.
        raise DataInputError(
            f"{path}: no file for split '{split}' (files: {', '.join(p.name for p in files)}). "
            "Pass --split matching a file name or point --source at one file"
        )
    return tuple(files)


def _split_word(name: str, word: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", name.lower()) is not None


def iter_rows(spec: SourceSpec, progress: Progress | None = None) -> Iterator[tuple[str, object]]:
    """Yield `(where, obj)` for every row of the source, in order."""
    progress = progress or Progress()
    if spec.hub_name is not None:
        yield from _iter_hub(spec, progress)
        return
    progress.total_units = sum(_units(p) for p in spec.files)
    for path in spec.files:
        if path.name.endswith(".parquet"):
            yield from _iter_parquet(path, progress)
        else:
            yield from _iter_json_file(path, progress)


def _units(path: Path) -> int:
    """Progress units: rows for Parquet (cheap from metadata), bytes otherwise."""
    if path.name.endswith(".parquet"):
        return _open_parquet(path).metadata.num_rows
    try:
        return path.stat().st_size
    except OSError as exc:
        raise DataInputError(f"{path}: cannot read ({exc.strerror}). Check the path") from exc


def _open_binary(path: Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataInputError(f"{path}: cannot open ({exc.strerror}). Check the path and permissions") from exc


def _iter_json_file(path: Path, progress: Progress) -> Iterator[tuple[str, object]]:
    with _open_binary(path) as f:
        # peek, not read+seek: the input may be a pipe.
        head = f.peek(_SNIFF)
        if head.lstrip().lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"["):
            yield from _iter_json_array(path, f, progress)
        else:
            yield from _iter_jsonl(path, f, progress)


@dataclass(frozen=True)
class InvalidJson:
    """Stands in for a JSONL line that does not decode, so it is reported as one bad row."""

    message: str


def _iter_jsonl(path: Path, f, progress: Progress) -> Iterator[tuple[str, object]]:
    name = path.name
    for lineno, line in enumerate(f, 1):
        progress.done_units += len(line)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            obj = InvalidJson(str(exc))
        yield f"{name}:{lineno}", obj


class _ArrayBuffer:
    """A sliding window of decoded text over a binary file."""

    def __init__(self, path: Path, f, progress: Progress) -> None:
        self.path, self.f, self.progress = path, f, progress
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.eof = False
        self.text = ""
        while "[" not in self.text and not self.eof:
            self.refill(0)

    def _decode(self, raw: bytes, final: bool) -> str:
        try:
            return self.decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            raise DataInputError(f"{self.path}: not UTF-8 text ({exc.reason}). Re-encode the file as UTF-8") from exc

    def refill(self, keep_from: int) -> None:
        more = self.f.read(_JSON_CHUNK)
        self.progress.done_units += len(more)
        self.eof = not more
        self.text = self.text[keep_from:] + self._decode(more, final=self.eof)


def _iter_json_array(path: Path, f, progress: Progress) -> Iterator[tuple[str, object]]:
    """Decode a top-level JSON array one element at a time from a sliding text buffer."""
    decoder = json.JSONDecoder()
    buf = _ArrayBuffer(path, f, progress)
    pos = buf.text.index("[") + 1
    index, need_sep = 0, False
    while True:
        pos = _skip_ws(buf.text, pos)
        if pos >= len(buf.text):
            if buf.eof:
                raise _array_error(path, index, "the array is not closed")
            buf.refill(pos)
            pos = 0
            continue
        char = buf.text[pos]
        if char == "]" and (need_sep or index == 0):
            return
        if need_sep:
            if char != ",":
                raise _array_error(path, index, f"expected ',' or ']', found {char!r}")
            pos, need_sep = pos + 1, False
            continue
        try:
            obj, end = decoder.raw_decode(buf.text, pos)
            complete = end < len(buf.text) or buf.eof
        except ValueError as exc:
            if buf.eof:
                raise _array_error(path, index, str(exc)) from exc
            complete = False
        if not complete:
            buf.refill(pos)
            pos = 0
            continue
        yield f"{path.name}#{index}", obj
        index, need_sep, pos = index + 1, True, end
        if pos > _JSON_CHUNK:
            buf.text, pos = buf.text[pos:], 0


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def _array_error(path: Path, index: int, detail: str) -> DataInputError:
    return DataInputError(
        f"{path}: malformed JSON array after {index} rows ({detail}). Fix the file or convert it to JSONL"
    )


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataInputError(
            f"{path}: unreadable Parquet ({type(exc).__name__}: {_first_line(exc)}). "
            "Re-export the file or pass the JSON/JSONL version"
        ) from exc


def _iter_parquet(path: Path, progress: Progress) -> Iterator[tuple[str, object]]:
    pf = _open_parquet(path)
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_FIELDS if c not in names]
    if missing:
        raise DataInputError(
            f"{path}: Parquet file has no column {', '.join(repr(m) for m in missing)} "
            f"(columns: {', '.join(sorted(names))}). PokerBench rows need 'instruction' and 'output'"
        )
    index = 0
    try:
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=list(REQUIRED_FIELDS)):
            for obj in batch.to_pylist():
                yield f"{path.name}#{index}", obj
                index += 1
            progress.done_units += batch.num_rows
    except DataInputError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("pyarrow"):
            raise DataInputError(
                f"{path}: unreadable Parquet at row {index} ({_first_line(exc)}). Re-export the file"
            ) from exc
        raise


def _iter_hub(spec: SourceSpec, progress: Progress) -> Iterator[tuple[str, object]]:
    ds = _load_hub(spec)
    missing = [c for c in REQUIRED_FIELDS if c not in ds.column_names]
    if missing:
        raise DataInputError(
            f"{spec.label}: data set has no column {', '.join(repr(m) for m in missing)} "
            f"(columns: {', '.join(ds.column_names)}). PokerBench rows need 'instruction' and 'output'"
        )
    progress.total_units = len(ds)
    index = 0
    # Batches of an Arrow-backed (memory-mapped) data set: memory stays flat.
    for batch in ds.select_columns(list(REQUIRED_FIELDS)).iter(batch_size=_PARQUET_BATCH):
        for inst, out in zip(batch["instruction"], batch["output"]):
            yield f"{spec.label}#{index}", {"instruction": inst, "output": out}
            index += 1
        progress.done_units = index


def _load_hub(spec: SourceSpec):
    try:
        import datasets
    except ImportError as exc:
        raise DataInputError(
            f"{spec.label}: reading a hub data set needs the 'datasets' package. "
            "pip install 'holdem-cluster[data]' or pass a local file"
        ) from exc
    try:
        return datasets.load_dataset(spec.hub_name, split=spec.split)
    except Exception as exc:  # hub, network, config and split errors share no base class
        raise DataInputError(
            f"{spec.label}: datasets.load_dataset failed ({type(exc).__name__}: {_first_line(exc)}). "
            "Check the name, the split and network access (HF_TOKEN in the environment if gated)"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
