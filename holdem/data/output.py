"""Atomic output for the data stage: the JSONL file and its `.stats.json`, written so that
`cluster.outputs.check_jsonl` (the one completeness rule, shared with the job plan) accepts the
pair only once both are in place. Also the atomic text writes `holdem.eval` uses for its results.

Commit order: both files are written as temp files beside their targets, the old stats file is
removed, the JSONL is renamed into place, then the stats file. A run killed at any point leaves
either the previous complete pair, or a JSONL without stats (incomplete), never a pair that agrees
by accident. Temp files of dead runs are removed by the next run (`remove_stale_temps`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from cluster.outputs import check_jsonl, stats_path_for

from holdem.data.source import REQUIRED_FIELDS

_TEMP_SUFFIX = ".tmp"
_FOREIGN_TEMP_AGE_S = 24 * 3600
_FLUSH_LINES = 2048


def temp_path_for(target: Path) -> Path:
    # Host and pid in the name let the next run tell a dead run's leftovers from a live run's file.
    return target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}{_TEMP_SUFFIX}")


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete temp files of `target` left by runs that are no longer alive; return what was removed."""
    removed = []
    prefix = f".{target.name}."
    host = socket.gethostname()
    for path in target.parent.glob(f"{prefix}*{_TEMP_SUFFIX}"):
        parts = path.name[len(prefix): -len(_TEMP_SUFFIX)].rsplit(".", 1)
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        if _is_stale(path, parts[0] == host, int(parts[1])):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _is_stale(path: Path, same_host: bool, pid: int) -> bool:
    if same_host:
        return not _pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > _FOREIGN_TEMP_AGE_S
    except FileNotFoundError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataOutputError(Exception):
    """Writing the output failed (a full disk, a quota, a file size limit, an unwritable dir);
    the temp file is already removed when this is raised, and nothing was committed."""


class OutputUnusable(Exception):
    """--out names a place no file can be created in (a usage error: nothing was written)."""


# Failures of the machine rather than of the command line (exit 1, not 2).
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EMFILE, errno.ENFILE})
_ERRNO_HINTS = {
    errno.ENOSPC: "Free space on {dir} or pick another --out",
    errno.EDQUOT: "The disk quota on {dir} is used up: free space or pick another --out",
    errno.EFBIG: "The file size limit was reached (ulimit -f): raise it or pick another --out",
    errno.EROFS: "{dir} is on a read-only filesystem: pick another --out",
    errno.EACCES: "{dir} is not writable: pick another --out",
    errno.EPERM: "{dir} is not writable: pick another --out",
}


class JsonlWriter:
    """Writes rows to a temp file beside `target`, counting lines and hashing bytes as it goes.

    Use as a context manager; `commit(stats)` makes the JSONL and its stats file visible. Leaving
    the block without commit (an exception, Ctrl-C) removes the temp file. A failed write (ENOSPC,
    EFBIG, ...) removes it at once and raises DataOutputError saying so.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self.temp = temp_path_for(self.target)
        self.lines = 0
        self.size = 0
        self.committed = False
        self._sha = hashlib.sha256()
        self._pending: list[str] = []
        self._file = None

    def __enter__(self) -> JsonlWriter:
        try:
            self._file = open(self.temp, "wb", buffering=0)
        except OSError as exc:
            if exc.errno in _ENVIRONMENT_ERRNOS:
                raise self._failure("creating the temp file", exc) from exc
            raise OutputUnusable(f"--out {self.target}: cannot create a file in {self.target.parent} "
                                 f"({exc.strerror or exc}). Pick another --out") from exc
        return self

    @property
    def rows_written(self) -> int:
        return self.lines + len(self._pending)

    def write_row(self, instruction: str, output: str) -> None:
        self._pending.append(json.dumps({"instruction": instruction, "output": output}, ensure_ascii=False))
        if len(self._pending) >= _FLUSH_LINES:
            self._flush()

    def write_lines(self, data: bytes, rows: int) -> None:
        """Append `rows` complete, already encoded lines (newline-terminated)."""
        self._flush()
        self._write(data, rows)

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk = ("\n".join(self._pending) + "\n").encode("utf-8")
        rows = len(self._pending)
        self._pending.clear()
        self._write(chunk, rows)

    def _write(self, chunk: bytes, rows: int) -> None:
        try:
            view = memoryview(chunk)
            while view:
                view = view[self._file.write(view):]
        except OSError as exc:
            raise self._failure("writing", exc) from exc
        self._sha.update(chunk)
        self.size += len(chunk)
        self.lines += rows

    def commit(self, stats: dict) -> dict:
        """Finish the file, then rename JSONL and stats into place; returns the stats written."""
        self._flush()
        try:
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise self._failure("syncing", exc) from exc
        stats = {**stats, "rows_out": self.lines, "bytes": self.size, "sha256": self._sha.hexdigest()}
        stats_target = stats_path_for(self.target)
        stats_temp = temp_path_for(stats_target)
        try:
            write_text_synced(stats_temp, json.dumps(stats, indent=2, sort_keys=True) + "\n")
            stats_target.unlink(missing_ok=True)
            os.replace(self.temp, self.target)
            os.replace(stats_temp, stats_target)
        except OSError as exc:
            stats_temp.unlink(missing_ok=True)
            raise self._failure("committing", exc) from exc
        self.committed = True
        _fsync_dir(self.target.parent)
        return stats

    def _failure(self, what: str, exc: OSError) -> DataOutputError:
        """Close and remove the temp file, and say what happened and what to do."""
        removed = self._discard()
        hint = _ERRNO_HINTS.get(exc.errno or 0, "Check the output directory").format(dir=self.target.parent)
        cleanup = (f"removed the temp file {self.temp.name}" if removed
                   else f"could not remove the temp file {self.temp} (remove it by hand)")
        return DataOutputError(
            f"--out {self.target}: {what} failed ({exc.strerror or exc}) after {self.lines:,} rows "
            f"({self.size / 2**20:.1f} MiB); {cleanup}; nothing committed. {hint}"
        )

    def _discard(self) -> bool:
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass  # the unwritten buffer is what failed; the file goes anyway
        try:
            self.temp.unlink(missing_ok=True)
        except OSError:
            return False
        return True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self._discard()


def write_text_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(target: Path, text: str) -> None:
    temp = temp_path_for(Path(target))
    try:
        write_text_synced(temp, text)
        os.replace(temp, target)
    finally:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_is_complete(path: str | os.PathLike, verify_checksum: bool = False) -> tuple[bool, str]:
    """`cluster.outputs.check_jsonl` for the data stage's own output (rows hold `instruction` and
    `output`): complete only when the stats file exists and agrees. The string says why (not)."""
    return check_jsonl(path, REQUIRED_FIELDS, verify_checksum=verify_checksum)
