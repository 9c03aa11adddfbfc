"""The one seam through which the launcher starts and stops processes.

It only ever signals what it started: the `ray start --block` child (its own process group) and
the processes that carry this node's tag in their environment. Never by name.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from cluster.launcher.render import TAG_ENV

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the launcher is SIGKILLed (Slurm, OOM), its Ray node must not outlive it: Slurm's
    # linuxproc tracking loses re-parented processes, so nothing else would ever stop them.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # No core files from Ray's processes: its dashboard agent dumps ~500 MB of core into the job's
    # working directory (the shared filesystem) when it dies at teardown.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def start_owned(argv: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start argv in its own session, output appended to log_path, dying with this process."""
    with open(log_path, "ab", buffering=0) as log:
        return subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent, close_fds=True,
        )


def is_alive(pid: int) -> bool:
    """True for a running process; zombies count as dead (init here reaps late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _has_tag(pid: int, tag: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TAG_ENV}={tag}".encode() in env.split(b"\0")


def find_tree(root: int | None, tag: str | None) -> set[int]:
    """Live descendants of root plus every process carrying tag (those re-parented to init).
    Pass root=None once the child has been reaped: its pid may belong to someone else by then."""
    pids = _all_pids()
    parents = {p: _ppid(p) for p in pids}
    tree: set[int] = set()
    frontier = [] if root is None else [root]
    tree.update(frontier)
    while frontier:
        cur = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == cur and p not in tree]
        tree.update(kids)
        frontier.extend(kids)
    if tag:
        tree.update(p for p in pids if p != os.getpid() and _has_tag(p, tag))
    return {p for p in tree if is_alive(p)}


def rss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/statm").read_text().split()
            total += int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _signal_pids(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class StopReport:
    seconds: float
    killed: int  # survivors that needed SIGKILL after the grace period


def stop_owned(
    proc: subprocess.Popen, tag: str | None, grace_s: float,
    on_wait: Callable[[], None] = lambda: None,
) -> StopReport:
    """SIGTERM the child's process group, wait for the whole tree, SIGKILL what is left."""
    t0 = time.monotonic()

    def root() -> int | None:
        return proc.pid if proc.poll() is None else None

    tree = find_tree(root(), tag)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _signal_pids(tree - {proc.pid}, signal.SIGTERM)
    deadline = t0 + grace_s
    while time.monotonic() < deadline:
        # Re-derive the set each time: a pid remembered from before may belong to someone else now.
        tree = find_tree(root(), tag)
        if not tree:
            return StopReport(time.monotonic() - t0, 0)
        on_wait()
        time.sleep(0.05)
    # SIGKILL until nothing is left: a process forked during the sweep would otherwise escape.
    killed: set[int] = set()
    kill_deadline = time.monotonic() + 5.0
    while (survivors := find_tree(root(), tag)) and time.monotonic() < kill_deadline:
        _signal_pids(survivors, signal.SIGKILL)
        killed |= survivors
        time.sleep(0.05)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return StopReport(time.monotonic() - t0, len(killed))
