"""The data stage's per-row work, done by worker processes on batches of rows (`BatchRunner`).

A batch (raw JSONL lines or decoded rows, see holdem.data.source) goes to a worker, which decodes,
validates and serialises every row and returns a compact `BatchResult`: the bad rows with their
reasons, and for the good ones their output lines (already encoded), their 64-bit text keys and
their (street, kind). The reading process keeps everything that depends on order (duplicates,
conflicts, counts, the bad-row limit, the output file), so the output is byte-identical whatever
the number of workers, and rows leave in input order. With one worker everything runs in-process.

Workers ignore SIGINT/SIGTERM (the reading process handles them and shuts the pool down) and die
with their parent (PR_SET_PDEATHSIG on Linux), so a killed run leaves no orphans.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring

from holdem.data.filters import bytes_key, text_key
from holdem.data.source import STALL, InvalidRow, LineBatch, RowBatch, decode_line, too_long_row
from holdem.data.validate import BadRow, InstructionParser, check_fields, label_kind

ROWS, LABELS = "rows", "labels"  # what a worker computes: everything, or only (instruction, label) keys


def render_line(instruction: str, output: str) -> str:
    """Exactly `json.dumps({"instruction": ..., "output": ...}, ensure_ascii=False)`, without the
    generic encoder's per-call overhead."""
    return '{"instruction": ' + encode_basestring(instruction) + ', "output": ' + encode_basestring(output) + "}"


@dataclass
class BatchResult:
    """What a worker returns for one batch. Good row j sits at batch position good_pos[j] (rows
    counted without blank lines) and its line is data[ends[j-1]:ends[j]] (newline included)."""

    n_rows: int = 0
    bad: list = field(default_factory=list)  # (position, where, reason, detail)
    good_pos: array = field(default_factory=lambda: array("I"))
    ikeys: array = field(default_factory=lambda: array("Q"))
    lkeys: array = field(default_factory=lambda: array("Q"))
    street_kind: list = field(default_factory=list)  # (street, kind) per good row
    data: bytes = b""
    ends: array = field(default_factory=lambda: array("I"))


def _rows_of(batch: LineBatch | RowBatch) -> Iterator[tuple[Callable[[], str], object, bytes | None]]:
    """(where thunk, decoded value, the JSONL line or None) per row; `where` strings are built only
    for bad rows."""
    if isinstance(batch, LineBatch):
        if batch.too_long:
            yield (lambda: f"{batch.name}:{batch.first_line}"), too_long_row(batch.too_long), None
            return
        lineno = batch.first_line
        for raw in batch.data.split(b"\n")[:-1]:
            if raw and not raw.isspace():  # `raw.strip()` without copying the line
                yield (lambda n=lineno: f"{batch.name}:{n}"), decode_line(raw), raw
            lineno += 1
    else:
        for k, obj in enumerate(batch.rows):
            yield (lambda k=k: f"{batch.prefix}#{batch.first_index + k}"), obj, None


# Labels recur (a data set has a few thousand distinct ones, each at most MAX_LABEL_CHARS long).
_label_key = lru_cache(maxsize=4096)(text_key)
_LINE_HEAD, _LINE_MIDDLE, _LINE_TAIL = b'{"instruction": "', b'", "output": "', b'"}'


def rendered_already(raw: bytes, n_fields: int, instruction: str, output: str) -> bytes | None:
    """When the JSONL line `raw` (decoded: a dict of `n_fields` fields, among them the strings
    `instruction` and `output`) is byte for byte `render_line(instruction, output)`, the
    instruction's UTF-8 (for its key); else None. A line written by `render_line` (or json.dumps
    with ensure_ascii=False) is its own output: this spares rendering it again.

    Why the checks suffice. Each backslash in a JSON text belongs to an escape in a string, and a
    newline in a string must be escaped (`\\n` or `\\u000a`), as must a quote, a backslash and any
    other control character. So if the line holds exactly as many backslashes as the two values
    hold newlines, the only escapes are those newlines' (none in the keys or in a value a repeated
    field overwrote), and the values hold no quote, backslash or other control character: the
    rendered line writes each value as its UTF-8 with `\\n` per newline, and its length is the one
    checked. Against that length, a `\\u000a` costs 4 more bytes and a repeated field 11 or more
    (`,"output":0`), while only the rendered layout's spaces can be saved, 2 of them once the line
    starts with `{"instruction": "`; so the line is the rendered tokens with its spaces moved at
    most, and the piece checked at the instruction's closing quote (`", "output": "`) and the
    ending (`"}`) put them where the rendered line has them."""
    if n_fields != 2:
        return None
    newlines_i = instruction.count("\n")
    newlines_o = output.count("\n")
    if raw.count(b"\\") != newlines_i + newlines_o or not raw.startswith(_LINE_HEAD):
        return None
    # No escape but newlines': the values hold no lone surrogate (only `\\ud800` can write one), so
    # they encode.
    instruction_utf8 = instruction.encode("utf-8")
    middle = len(_LINE_HEAD) + len(instruction_utf8) + newlines_i
    tail = middle + len(_LINE_MIDDLE) + len(output.encode("utf-8")) + newlines_o
    if len(raw) == tail + len(_LINE_TAIL) and raw.startswith(_LINE_MIDDLE, middle) and raw.endswith(_LINE_TAIL):
        return instruction_utf8
    return None


def process_rows(batch: LineBatch | RowBatch, parser: InstructionParser | None) -> BatchResult:
    out = BatchResult()
    chunks: list[bytes] = []
    ends, good_pos, ikeys, lkeys, street_kind = out.ends, out.good_pos, out.ikeys, out.lkeys, out.street_kind
    size = 0
    pos = -1
    for pos, (where, obj, raw) in enumerate(_rows_of(batch)):
        checked = check_fields(obj, parser)
        if isinstance(checked, BadRow):
            out.bad.append((pos, where(), checked.reason, checked.detail))
            continue
        instruction, output, street, kind = checked
        instruction_utf8 = None if raw is None else rendered_already(raw, len(obj), instruction, output)
        if instruction_utf8 is not None:  # the input line is the output line
            encoded = raw + b"\n"
            ikey = bytes_key(instruction_utf8)
        else:
            try:
                encoded = (render_line(instruction, output) + "\n").encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate, written as a \ud800 escape in the input
                out.bad.append((pos, where(), "not_encodable",
                                f"text holds a lone surrogate ({exc.object[exc.start:exc.end]!r}), which UTF-8 cannot encode"))
                continue
            ikey = text_key(instruction)
        chunks.append(encoded)
        size += len(encoded)
        ends.append(size)
        good_pos.append(pos)
        ikeys.append(ikey)
        lkeys.append(_label_key(output))
        street_kind.append((street, kind))
    out.n_rows = pos + 1
    out.data = b"".join(chunks)
    return out


def process_labels(batch: LineBatch | RowBatch) -> tuple[array, array]:
    """The first pass of --drop-conflicts: (instruction key, label key) of every row that has a
    string instruction and a label in the grammar."""
    ikeys, lkeys = array("Q"), array("Q")
    for _, obj, _ in _rows_of(batch):
        if isinstance(obj, dict) and not isinstance(obj, InvalidRow):
            inst, out = obj.get("instruction"), obj.get("output")
            if isinstance(inst, str) and isinstance(out, str) and label_kind(out) is not None:
                try:
                    ikey, lkey = text_key(inst), text_key(out)
                except UnicodeEncodeError:
                    continue
                ikeys.append(ikey)
                lkeys.append(lkey)
    return ikeys, lkeys


_worker_parser: InstructionParser | None = None


def _process(mode: str, batch: LineBatch | RowBatch):
    return process_rows(batch, _worker_parser) if mode == ROWS else process_labels(batch)


def _worker_main(conn, parser: InstructionParser | None) -> None:
    """A worker's life: batches in, results out, until None or the parent goes away."""
    global _worker_parser
    _worker_parser = parser
    # The parent handles Ctrl-C and SIGTERM and ends the workers; a worker must not die half-way
    # through a batch or print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            reply = ("ok", _process(*message))
        except Exception as exc:  # a bug: hand it to the parent, which reports it
            reply = ("error", exc)
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return
        except Exception as exc:  # an unpicklable exception
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class WorkerDied(Exception):
    """A worker process ended without an answer (killed by the OOM killer, a signal, a crash)."""


class BatchRunner:
    """Runs `_process` over batches on `workers` processes (in-process for 1), results in input
    order. Each worker has its own pipe and at most one batch at a time, handed out round-robin,
    so results come back in order by construction, memory stays flat on any input size, and a
    worker that dies is an EOF on its pipe (not a hung pool: concurrent.futures in Python 3.11
    can deadlock when a worker dies while a large task is being sent)."""

    JOIN_S = 10.0  # a worker finishes its batch in well under a second

    def __init__(self, workers: int, parser: InstructionParser | None) -> None:
        self.workers = max(1, workers)
        self.parser = parser
        self._procs: list = []
        self._conns: list = []

    def __enter__(self) -> BatchRunner:
        if self.workers > 1:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            try:
                for _ in range(self.workers):
                    mine, theirs = context.Pipe(duplex=True)
                    proc = context.Process(target=_worker_main, args=(theirs, self.parser), daemon=True,
                                           name="holdem-data-worker")
                    proc.start()
                    theirs.close()
                    self._procs.append(proc)
                    self._conns.append(mine)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            conn.close()  # a worker blocked sending a result sees the pipe close and ends
        for proc in self._procs:
            proc.join(self.JOIN_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs, self._conns = [], []

    def map(self, mode: str, batches: Iterable[LineBatch | RowBatch | None]) -> Iterator:
        if not self._conns:
            global _worker_parser
            _worker_parser = self.parser
            for batch in batches:
                if batch is not STALL:
                    yield _process(mode, batch)
            return
        busy: deque[int] = deque()  # workers holding a batch, oldest first
        turn = 0
        for batch in batches:
            if batch is STALL:  # the source may block: hand back everything in flight first
                while busy:
                    yield self._receive(busy.popleft())
                continue
            if len(busy) == len(self._conns):
                yield self._receive(busy.popleft())  # round-robin: this frees worker `turn`
            self._send(turn, (mode, batch))
            busy.append(turn)
            turn = (turn + 1) % len(self._conns)
        while busy:
            yield self._receive(busy.popleft())

    def _send(self, worker: int, message: tuple) -> None:
        try:
            self._conns[worker].send(message)
        except (OSError, EOFError) as exc:
            raise self._died(worker) from exc

    def _receive(self, worker: int):
        try:
            status, payload = self._conns[worker].recv()
        except (OSError, EOFError) as exc:
            raise self._died(worker) from exc
        if status == "error":
            raise payload
        return payload

    def _died(self, worker: int) -> WorkerDied:
        proc = self._procs[worker]
        proc.join(self.JOIN_S)
        code = proc.exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        return WorkerDied(f"worker process {proc.pid} ended without finishing its batch ({how}; the OOM killer?); "
                          "nothing committed. Check the memory limit, or pass --workers 1")
