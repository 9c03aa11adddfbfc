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
from json.encoder import encode_basestring

from holdem.data.filters import text_key
from holdem.data.source import STALL, InvalidRow, LineBatch, RowBatch, decode_line, too_long_row
from holdem.data.validate import BadRow, InstructionParser, check_row, label_kind

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


def _rows_of(batch: LineBatch | RowBatch) -> Iterator[tuple[Callable[[], str], object]]:
    """(where thunk, decoded value) per row; `where` strings are built only for bad rows."""
    if isinstance(batch, LineBatch):
        if batch.too_long:
            yield (lambda: f"{batch.name}:{batch.first_line}"), too_long_row(batch.too_long)
            return
        lineno = batch.first_line
        for raw in batch.data.split(b"\n")[:-1]:
            if raw.strip():
                yield (lambda n=lineno: f"{batch.name}:{n}"), decode_line(raw)
            lineno += 1
    else:
        for k, obj in enumerate(batch.rows):
            yield (lambda k=k: f"{batch.prefix}#{batch.first_index + k}"), obj


def process_rows(batch: LineBatch | RowBatch, parser: InstructionParser | None) -> BatchResult:
    out = BatchResult()
    lines: list[str] = []
    ends, good_pos, ikeys, lkeys, street_kind = out.ends, out.good_pos, out.ikeys, out.lkeys, out.street_kind
    size = 0
    pos = -1
    for pos, (where, obj) in enumerate(_rows_of(batch)):
        checked = check_row(obj, parser)
        if isinstance(checked, BadRow):
            out.bad.append((pos, where(), checked.reason, checked.detail))
            continue
        line = render_line(checked.instruction, checked.output) + "\n"
        try:
            size += len(line.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate, written as a \ud800 escape in the input
            out.bad.append((pos, where(), "not_encodable",
                            f"text holds a lone surrogate ({exc.object[exc.start:exc.end]!r}), which UTF-8 cannot encode"))
            continue
        lines.append(line)
        ends.append(size)
        good_pos.append(pos)
        ikeys.append(text_key(checked.instruction))
        lkeys.append(text_key(checked.output))
        street_kind.append((checked.street, checked.kind))
    out.n_rows = pos + 1
    out.data = "".join(lines).encode("utf-8")
    return out


def process_labels(batch: LineBatch | RowBatch) -> tuple[array, array]:
    """The first pass of --drop-conflicts: (instruction key, label key) of every row that has a
    string instruction and a label in the grammar."""
    ikeys, lkeys = array("Q"), array("Q")
    for _, obj in _rows_of(batch):
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
