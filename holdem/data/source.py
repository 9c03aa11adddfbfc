"""Streaming row sources for the data stage: JSON, JSONL, Parquet, a directory of those, or a
Hugging Face data set through `datasets.load_dataset`.

A source is read as a sequence of batches, in order (`iter_batches`): `LineBatch` holds raw JSONL
lines (decoded and validated by the worker processes, so the reading process only finds line
ends), `RowBatch` holds already decoded rows (JSON arrays, Parquet, the hub). `iter_rows` decodes
the batches one row at a time, yielding `(where, obj)` pairs where `where` names the row for error
messages (`file.jsonl:17`, `file.parquet#3`, `RZ412/PokerBench[train]#5`) and `obj` is the decoded
row (a dict for well-formed input, `InvalidRow` for a line that does not decode).

Nothing reads a whole file into memory: a JSONL line or a JSON array element longer than
`MAX_ROW_BYTES` is a bad row (JSONL) or a bad input (JSON array), not a reason to buffer it;
`datasets` and `pyarrow` are imported only when a Parquet file or a hub data set is actually read.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")
REQUIRED_FIELDS = ("instruction", "output")
MAX_ROW_BYTES = 1 << 20  # PokerBench rows are ~1.2 KB; a 1 MiB row is not one
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_BATCH_BYTES = 1 << 20
_JSON_CHUNK = 1 << 20
_SNIFF = 64
_PARQUET_BATCH = 1024
_UTF8_BOM = b"\xef\xbb\xbf"


STALL = None  # in a batch stream: the source may block before its next batch (a pipe)


class DataInputError(Exception):
    """The input as a whole cannot be read (missing, unreadable, malformed beyond one row)."""


@dataclass(frozen=True)
class SourceSpec:
    """What `--source` resolved to: local files (in read order) or a hub data set name."""

    label: str
    files: tuple[Path, ...] = ()
    hub_name: str | None = None
    split: str = "train"


@dataclass(frozen=True)
class LineBatch:
    """Complete JSONL lines of `name`, the first being line `first_line` (1-based). `too_long` > 0
    marks instead one line longer than MAX_ROW_BYTES (its length so far), skipped unread."""

    name: str
    first_line: int
    data: bytes
    too_long: int = 0


@dataclass(frozen=True)
class RowBatch:
    """Decoded rows; row k is named `f"{prefix}#{first_index + k}"`."""

    prefix: str
    first_index: int
    rows: list


@dataclass(frozen=True)
class InvalidRow:
    """Stands in for a JSONL line that does not decode, so it is reported as one bad row."""

    reason: str  # invalid_json | not_utf8 | too_long
    message: str


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
    """Decide whether `source` is a local file/directory or a hub data set (no rows read)."""
    if source.startswith("hf:"):
        return SourceSpec(label=f"{source[3:]}[{split}]", hub_name=source[3:], split=split)
    path = Path(source)
    try:
        if path.is_dir():
            return SourceSpec(label=source, files=_files_in_dir(path, split), split=split)
        exists = path.exists()
    except OSError as exc:
        raise DataInputError(f"{source}: cannot look at it ({exc.strerror or exc}). Check the path and permissions") from exc
    if exists:
        return SourceSpec(label=source, files=(path,), split=split)
    if _HUB_NAME.fullmatch(source) and not source.endswith(DATA_SUFFIXES):
        return SourceSpec(label=f"{source}[{split}]", hub_name=source, split=split)
    raise DataInputError(
        f"{source}: no such file or directory. Pass an existing JSON/JSONL/Parquet file or "
        "directory, or a Hugging Face data set name such as RZ412/PokerBench"
    )


def _files_in_dir(path: Path, split: str) -> tuple[Path, ...]:
    try:
        files = sorted(p for p in path.iterdir() if p.name.endswith(DATA_SUFFIXES) and p.is_file())
    except OSError as exc:
        raise DataInputError(f"{path}: cannot list the directory ({exc.strerror or exc}). Check its permissions") from exc
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


# ---- batches -----------------------------------------------------------------------------------

def iter_batches(spec: SourceSpec, progress: Progress | None = None) -> Iterator[LineBatch | RowBatch | None]:
    """Every row of the source, in order, in batches of about a MiB; STALL (None) between batches
    when the next read may block (so a consumer finishes what it holds first)."""
    progress = progress or Progress()
    if spec.hub_name is not None:
        yield from _hub_batches(spec, progress)
        return
    progress.total_units = sum(_units(p) for p in spec.files)
    for path in spec.files:
        if path.name.endswith(".parquet"):
            yield from _parquet_batches(path, progress)
        else:
            yield from _json_file_batches(path, progress)


def _units(path: Path) -> int:
    """Progress units: rows for Parquet (cheap from metadata), bytes otherwise."""
    if path.name.endswith(".parquet"):
        return _open_parquet(path).metadata.num_rows
    try:
        return path.stat().st_size
    except OSError as exc:
        raise DataInputError(f"{path}: cannot read ({exc.strerror or exc}). Check the path") from exc


def _open_binary(path: Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataInputError(f"{path}: cannot open ({exc.strerror or exc}). Check the path and permissions") from exc


def _read(path: Path, f, size: int) -> bytes:
    try:
        return f.read(size)
    except OSError as exc:  # EIO, EISDIR, a file that vanished on a network filesystem
        raise DataInputError(f"{path}: read failed ({exc.strerror or exc}). Check the file") from exc


def _json_file_batches(path: Path, progress: Progress) -> Iterator[LineBatch | RowBatch]:
    with _open_binary(path) as f:
        try:
            head = f.peek(_SNIFF)[:_SNIFF]  # peek, not read+seek: the input may be a pipe
        except OSError as exc:
            raise DataInputError(f"{path}: read failed ({exc.strerror or exc}). Check the file") from exc
        _check_encoding(path, head)
        if head.removeprefix(_UTF8_BOM).lstrip(b" \t\r\n").startswith(b"["):
            yield from _json_array_batches(path, f, progress)
        else:
            yield from _jsonl_batches(path, f, progress)


def _check_encoding(path: Path, head: bytes) -> None:
    """Refuse UTF-16/32 text at once (line by line it would be one bad row per line)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        seen = "UTF-16 or UTF-32 text (it starts with a byte-order mark)"
    elif b"\x00" in head[:4]:
        seen = "UTF-16/UTF-32 text or binary data (NUL bytes at its start)"
    else:
        return
    raise DataInputError(f"{path}: {seen}, not UTF-8. Re-encode it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")


def _jsonl_batches(path: Path, f, progress: Progress) -> Iterator[LineBatch | None]:
    """Batches of complete lines; a line longer than MAX_ROW_BYTES is skipped to its end. From a
    pipe, batches are what has arrived, each followed by STALL (the next read may block)."""
    name, line, pending = path.name, 1, b""
    pipe = not _is_regular(f)
    read = (lambda: _read1(path, f, _BATCH_BYTES)) if pipe else (lambda: _read(path, f, _BATCH_BYTES))
    chunk = read()
    progress.done_units += len(chunk)
    chunk = chunk.removeprefix(_UTF8_BOM)
    while chunk:
        data = pending + chunk
        end = data.rfind(b"\n") + 1
        body, pending = data[:end], data[end:]
        if body:
            yield from _line_batches(name, line, body)
            line += body.count(b"\n")
            if pipe:
                yield STALL
        if len(pending) > MAX_ROW_BYTES:
            rest = yield from _skip_long_line(path, f, progress, name, line, len(pending))
            if rest is None:
                return
            line, pending = line + 1, rest
        chunk = read()
        progress.done_units += len(chunk)
    if pending.strip():
        yield from _line_batches(name, line, pending + b"\n")  # a last line without its newline


def _is_regular(f) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except OSError:
        return False


def _read1(path: Path, f, size: int) -> bytes:
    try:
        return f.read1(size)
    except OSError as exc:
        raise DataInputError(f"{path}: read failed ({exc.strerror or exc}). Check the file") from exc


def _line_batches(name: str, line: int, body: bytes) -> Iterator[LineBatch]:
    """`body` (complete lines) as one batch, or split around its lines longer than MAX_ROW_BYTES."""
    if len(body) <= MAX_ROW_BYTES or max(map(len, body.split(b"\n"))) <= MAX_ROW_BYTES:
        yield LineBatch(name, line, body)
        return
    start = seg_start = 0
    seg_line = cur = line
    while start < len(body):
        stop = body.index(b"\n", start)
        if stop - start > MAX_ROW_BYTES:
            if start > seg_start:
                yield LineBatch(name, seg_line, body[seg_start:start])
            yield LineBatch(name, cur, b"", too_long=stop - start)
            seg_start, seg_line = stop + 1, cur + 1
        start, cur = stop + 1, cur + 1
    if seg_start < len(body):
        yield LineBatch(name, seg_line, body[seg_start:])


def _skip_long_line(path: Path, f, progress: Progress, name: str, line: int, seen: int):
    """Read past the rest of an over-long line; yields its bad-row batch and returns what follows
    its newline (None at end of file)."""
    while True:
        chunk = _read(path, f, _BATCH_BYTES)
        progress.done_units += len(chunk)
        if not chunk:
            yield LineBatch(name, line, b"", too_long=seen)
            return None
        newline = chunk.find(b"\n")
        if newline >= 0:
            yield LineBatch(name, line, b"", too_long=seen + newline)
            return chunk[newline + 1:]
        seen += len(chunk)


# json.loads(text) is JSONDecoder().decode(text) (the default decoder): for a text that starts
# with "{" that is scan_once(text, 0) and a check that nothing follows the value.
_scan_once = json.JSONDecoder().scan_once


def decode_line(raw: bytes) -> object:
    """One JSONL line -> its JSON value, or InvalidRow saying why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidRow("not_utf8", f"not UTF-8 text (byte {exc.start}: {exc.reason}); re-encode the file as UTF-8")
    if text[:1] == "{":
        # A row as written (an object, no space around it): what json.loads(text) does for it, minus
        # its generic steps. Anything else, or any error, goes through json.loads for its message.
        try:
            obj, end = _scan_once(text, 0)
        except Exception:  # json.loads below raises it again, in its own words
            pass
        else:
            if end == len(text):
                return obj
    return loads_line(text)


def loads_line(text: str) -> object:
    """json.loads of one line, or InvalidRow with its message (decode_line's general path)."""
    try:
        return json.loads(text)
    except RecursionError:
        return InvalidRow("invalid_json", "JSON nested too deeply")
    except ValueError as exc:
        return InvalidRow("invalid_json", f"not valid JSON ({str(exc)[:200]})")


def too_long_row(length: int) -> InvalidRow:
    return InvalidRow("too_long", f"line of {length:,}+ bytes, longer than any PokerBench row "
                                  f"(limit {MAX_ROW_BYTES:,} bytes)")


def iter_lines(batch: LineBatch) -> Iterator[tuple[int, object]]:
    """(line number, decoded value) of every non-blank line of a batch."""
    if batch.too_long:
        yield batch.first_line, too_long_row(batch.too_long)
        return
    lineno = batch.first_line
    for raw in batch.data.split(b"\n")[:-1]:
        if raw.strip():
            yield lineno, decode_line(raw)
        lineno += 1


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
        more = _read(self.path, self.f, _JSON_CHUNK)
        self.progress.done_units += len(more)
        self.eof = not more
        self.text = self.text[keep_from:] + self._decode(more, final=self.eof)


def _json_array_batches(path: Path, f, progress: Progress) -> Iterator[RowBatch]:
    rows: list = []
    first = 0
    for index, obj in _iter_json_array(path, f, progress):
        if not rows:
            first = index
        rows.append(obj)
        if len(rows) >= _PARQUET_BATCH:
            yield RowBatch(path.name, first, rows)
            rows = []
    if rows:
        yield RowBatch(path.name, first, rows)


def _iter_json_array(path: Path, f, progress: Progress) -> Iterator[tuple[int, object]]:
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
            _check_trailing(path, buf, pos + 1, index)
            return
        if need_sep:
            if char != ",":
                raise _array_error(path, index, f"expected ',' or ']', found {char!r}")
            pos, need_sep = pos + 1, False
            continue
        try:
            obj, end = decoder.raw_decode(buf.text, pos)
            complete = end < len(buf.text) or buf.eof
        except RecursionError as exc:
            raise _array_error(path, index, "an element is nested too deeply") from exc
        except ValueError as exc:
            if buf.eof:
                raise _array_error(path, index, str(exc)) from exc
            complete = False
        if not complete:
            if len(buf.text) - pos > MAX_ROW_BYTES:
                raise _array_error(path, index, f"element {index} is longer than {MAX_ROW_BYTES:,} characters")
            buf.refill(pos)
            pos = 0
            continue
        yield index, obj
        index, need_sep, pos = index + 1, True, end
        if pos > _JSON_CHUNK:
            buf.text, pos = buf.text[pos:], 0


def _check_trailing(path: Path, buf: _ArrayBuffer, pos: int, index: int) -> None:
    """Only whitespace may follow the closing bracket (else the file is not one JSON array)."""
    while True:
        pos = _skip_ws(buf.text, pos)
        if pos < len(buf.text):
            raise _array_error(path, index, f"text after the closing ']' ({buf.text[pos:pos + 20]!r})")
        if buf.eof:
            return
        buf.refill(pos)
        pos = 0


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def _array_error(path: Path, index: int, detail: str) -> DataInputError:
    return DataInputError(
        f"{path}: malformed JSON array after {index} rows ({detail}). Fix the file or convert it to JSONL"
    )


# ---- Parquet and the hub -----------------------------------------------------------------------

def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataInputError(
            f"{path}: unreadable Parquet ({type(exc).__name__}: {_first_line(exc)}). "
            "Re-export the file or pass the JSON/JSONL version"
        ) from exc


def _parquet_batches(path: Path, progress: Progress) -> Iterator[RowBatch]:
    pf = _open_parquet(path)
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_FIELDS if c not in names]
    if missing:
        raise DataInputError(
            f"{path}: Parquet file has no column {', '.join(repr(m) for m in missing)} "
            f"(columns: {', '.join(sorted(names))}). PokerBench rows need 'instruction' and 'output'"
        )
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH, columns=list(REQUIRED_FIELDS))
    index = 0
    while True:
        try:
            # Only pyarrow runs in here (a damaged page raises OSError, ArrowInvalid, ...).
            batch = next(batches, None)
            rows = None if batch is None else batch.to_pylist()
        except Exception as exc:
            raise DataInputError(
                f"{path}: unreadable Parquet at row {index} ({type(exc).__name__}: {_first_line(exc)}). "
                "Re-export the file or pass the JSON/JSONL version"
            ) from exc
        if rows is None:
            return
        progress.done_units += len(rows)
        yield RowBatch(path.name, index, rows)
        index += len(rows)


def _hub_batches(spec: SourceSpec, progress: Progress) -> Iterator[RowBatch]:
    ds = _load_hub(spec)
    missing = [c for c in REQUIRED_FIELDS if c not in ds.column_names]
    if missing:
        raise DataInputError(
            f"{spec.label}: data set has no column {', '.join(repr(m) for m in missing)} "
            f"(columns: {', '.join(ds.column_names)}). PokerBench rows need 'instruction' and 'output'"
        )
    progress.total_units = len(ds)
    # Batches of an Arrow-backed (memory-mapped) data set: memory stays flat.
    batches = iter(ds.select_columns(list(REQUIRED_FIELDS)).iter(batch_size=_PARQUET_BATCH))
    index = 0
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a damaged cache file
            raise DataInputError(f"{spec.label}: reading the data set failed at row {index} "
                                 f"({type(exc).__name__}: {_first_line(exc)}). Clear its cache and retry") from exc
        if batch is None:
            return
        rows = [{"instruction": i, "output": o} for i, o in zip(batch["instruction"], batch["output"])]
        yield RowBatch(spec.label, index, rows)
        index += len(rows)
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


# ---- one row at a time -------------------------------------------------------------------------

def iter_rows(spec: SourceSpec, progress: Progress | None = None) -> Iterator[tuple[str, object]]:
    """Yield `(where, obj)` for every row of the source, in order."""
    for batch in iter_batches(spec, progress):
        if batch is not STALL:
            yield from batch_rows(batch)


def batch_rows(batch: LineBatch | RowBatch) -> Iterator[tuple[str, object]]:
    if isinstance(batch, LineBatch):
        for lineno, obj in iter_lines(batch):
            yield f"{batch.name}:{lineno}", obj
    else:
        for k, obj in enumerate(batch.rows):
            yield f"{batch.prefix}#{batch.first_index + k}", obj


# Kept for callers that named the old stand-in type.
InvalidJson = InvalidRow
