"""Node-local owner records of what a launcher holds on its node: its Ray port band and its Ray
temp dir.

Ray binds a worker port only when that worker starts, so the band of a job that started a minute ago
looks free to a second job picking its ports now; with bands of different sizes (nodes with more
CPUs get wider worker ranges) the second could overlap the first one's worker range and a worker of
either would later fail to bind. And a launcher that is SIGKILLed (OOM killer, a node crash) never
removes its temp dir. So each launcher writes one record while it holds a band,
`<temp_root>/holdem-claims/<host>.<tag>.<pid>.json`, in a directory shared by every user of the node
(mode 1777, like /tmp). `claim_band` skips bands overlapping a live record and, under a lock, removes
the records of launchers that are gone, with the temp dirs they name when this user owns them.

A record's owner is alive while its pid runs with the start time the record holds (a reused pid is
not mistaken for it; a zombie counts as dead). Everything here is best effort: when the directory
cannot be used, bands are still checked for listeners, as before, and the caller logs why.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from cluster.outputs import write_json_atomic

CLAIMS_DIR = "holdem-claims"
LOCK_TIMEOUT_S = 10.0
POLL_S = 0.02


def process_start(pid: int) -> int | None:
    """The start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22); None when it
    does not run or is a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Record:
    """One launcher's claim, as read back from its file."""

    path: Path
    host: str
    tag: str
    pid: int
    pid_start: int | None
    uid: int
    lo: int
    hi: int
    temp_dir: str | None

    @property
    def alive(self) -> bool:
        return self.pid_start is not None and process_start(self.pid) == self.pid_start

    def overlaps(self, lo: int, hi: int) -> bool:
        return self.lo <= hi and lo <= self.hi


@dataclass
class Claim:
    """The record this launcher holds: `note_temp_dir` once its temp dir exists, `release` at teardown."""

    path: Path
    data: dict = field(default_factory=dict)

    def note_temp_dir(self, temp_dir: str) -> None:
        self.data["temp_dir"] = temp_dir
        _write(self.path, self.data)

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


@dataclass
class BandChoice:
    index: int | None  # into the bands given; None: every band is held or busy
    claim: Claim | None  # None when the records directory could not be used
    skipped: list[str]  # why each band before the chosen one was passed over
    swept: list[str]  # what was removed for launchers that are gone
    note: str | None = None  # why records are not used, if they are not


def claim_band(root: str, host: str, tag: str, bands: Sequence[tuple[int, int]],
               busy: Callable[[int], list[int]]) -> BandChoice:
    """The first of `bands` (port ranges, in the order to try) that no live record overlaps and
    that has no listener (`busy(k)` -> the listening ports of band k), recorded for this process.
    Records of launchers that are gone are removed first (with their temp dirs, if ours)."""
    directory = Path(root) / CLAIMS_DIR
    note = None
    try:
        _shared_dir(directory)
    except OSError as err:
        directory, note = None, f"port claims off: cannot use {Path(root) / CLAIMS_DIR} ({err.strerror or err})"
    with _locked(directory) as usable:
        if directory is not None and not usable:
            note = f"port claims off: {directory}/.lock was held for {LOCK_TIMEOUT_S:.0f} s"
        records, swept = (_sweep(directory, host, root) if usable else ([], []))
        skipped = []
        for k, (lo, hi) in enumerate(bands):
            holder = next((r for r in records if r.overlaps(lo, hi)), None)
            if holder is not None:
                skipped.append(f"band {k} ({lo}-{hi}) held by {holder.tag} (pid {holder.pid})")
                continue
            listening = busy(k)
            if listening:
                skipped.append(f"band {k} ({lo}-{hi}) has listeners on {listening[:3]}")
                continue
            claim = _record(directory, host, tag, lo, hi) if usable else None
            return BandChoice(k, claim, skipped, swept, note)
        return BandChoice(None, None, skipped, swept, note)


def read_records(directory: Path, host: str) -> list[Record]:
    out = []
    for path in sorted(directory.glob(f"{host}.*.json")):
        try:
            d = json.loads(path.read_text())
            out.append(Record(path, d["host"], d["tag"], int(d["pid"]), d.get("pid_start"), int(d["uid"]),
                              int(d["lo"]), int(d["hi"]), d.get("temp_dir")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written (atomic rename makes this rare) or not ours: ignore
    return out


def _sweep(directory: Path, host: str, root: str) -> tuple[list[Record], list[str]]:
    """-> (live records of this host, what was removed for the dead ones)."""
    live, swept = [], []
    uid = os.getuid()
    for rec in read_records(directory, host):
        if rec.alive:
            live.append(rec)
            continue
        if rec.uid != uid:
            continue  # another user's: the sticky directory lets only them remove it
        if rec.temp_dir and _removable_temp_dir(rec.temp_dir, root, uid):
            shutil.rmtree(rec.temp_dir, ignore_errors=True)
            swept.append(f"temp dir {rec.temp_dir} of {rec.tag} (pid {rec.pid}, gone)")
        try:
            rec.path.unlink()
            swept.append(f"claim {rec.path.name}")
        except FileNotFoundError:
            pass
    return live, swept


def _removable_temp_dir(path: str, root: str, uid: int) -> bool:
    """Only a Ray temp dir this launcher family makes: `<root>/ray-*`, a real directory of this user."""
    p = Path(path)
    if p.parent != Path(root) or not p.name.startswith("ray-"):
        return False
    try:
        st = os.lstat(p)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid


def _record(directory: Path, host: str, tag: str, lo: int, hi: int) -> Claim:
    pid = os.getpid()
    data = {"host": host, "tag": tag, "pid": pid, "pid_start": process_start(pid), "uid": os.getuid(),
            "lo": lo, "hi": hi, "temp_dir": None, "time": time.time()}
    claim = Claim(directory / f"{host}.{tag}.{pid}.json", data)
    _write(claim.path, data)
    return claim


def _write(path: Path, data: dict) -> None:
    write_json_atomic(path, data)
    os.chmod(path, 0o644)  # other users' launchers read it (until then they skip it as unreadable)


def _shared_dir(directory: Path) -> None:
    try:
        os.mkdir(directory, 0o1777)
        os.chmod(directory, 0o1777)  # past the umask: every user of the node records here
    except FileExistsError:
        pass
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, "not writable by this user")


@contextmanager
def _locked(directory: Path | None) -> Iterator[bool]:
    """flock on `<directory>/.lock`, polled until LOCK_TIMEOUT_S; yields whether it is held."""
    if directory is None:
        yield False
        return
    try:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user made it without write permission for us: read is enough
        fd = os.open(directory / ".lock", os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(POLL_S)  # polling the lock's condition, bounded by the deadline
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
