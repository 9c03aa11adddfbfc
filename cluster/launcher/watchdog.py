"""The stall watchdog (node 0, while the Ray job runs) and the stack dumps of every node.

Progress is any of: the driver log grew (slime's metric lines are part of it), the checkpoint
tracker under the save dir changed. No progress for `watchdog.stall_s` seconds is a stall:

1. node 0 asks every node for the Python stacks of this job's processes (`restart-<n>/rendezvous/
   stacks-request.json`; the workers answer from their wait loop through `answer_stack_request`)
   and dumps its own: the driver and every Ray worker process (`ray::…`, default_worker.py) of
   this node's Ray, found by the launcher's process tree and tag, never by name;
2. the stacks land in `restart-<n>/stacks/node-<i>-<host>.txt`, one section per process, written
   with **py-spy** (`py-spy dump --pid P`, shipped with ray[default]; it needs ptrace rights over
   the job's processes, which the job's own user has unless the kernel forbids it). Without py-spy
   the file lists each process with its kernel state and wait channel and says to install it —
   faulthandler is not used: SIGUSR1 kills a Python process that did not register a handler;
3. node 0 waits for every node's file (a condition with a deadline: `watchdog.dump_timeout_s`),
   then ends the job: `Stalled` "stalled N s after rollout R", or with `on_stall: requeue` it asks
   Slurm to requeue the job (`scontrol requeue`) and ends this run.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from cluster.errors import JobFailedError
from cluster.launcher.context import Node
from cluster.launcher.procs import find_tree
from cluster.launcher.rendezvous import read_json, write_json_atomic

CHECK_EVERY_S = 1.0  # how often the checkpoint tracker is looked at
PY_SPY_TIMEOUT_S = 30.0
TRACKER = "latest_checkpointed_iteration.txt"
_METRIC = re.compile(rb"(?:^|[\s\]\)>:-])(?:rollout|perf) (\d+): \{")
# Ray's own daemons: not the job's code (their stacks say nothing about a stalled step).
_DAEMONS = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "ray start",
            "ray/autoscaler", "agent_main", "py-spy")


class Stalled(JobFailedError):
    """No progress for watchdog.stall_s: the stacks were dumped and the job is ended (or requeued)."""

    final_state = "stalled"


def _tracker_state(save_dir: str | None) -> tuple[int, str] | None:
    if not save_dir:
        return None
    path = Path(save_dir) / TRACKER
    try:
        return path.stat().st_mtime_ns, path.read_text()[:64]
    except OSError:
        return None


class Progress:
    """Whether the run moved since last time: driver log bytes, the newest rollout in it, the
    checkpoint tracker. Pure apart from reading those two files."""

    def __init__(self, driver_log: Path, save_dir: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.driver_log, self.save_dir, self.clock = driver_log, save_dir, clock
        self.offset, self.partial = 0, b""
        self.rollout: int | None = None
        self.tracker = _tracker_state(save_dir)
        self.last_progress = clock()
        self.next_tracker = 0.0

    def _read_log(self) -> bool:
        try:
            size = self.driver_log.stat().st_size
        except OSError:
            return False
        if size < self.offset:  # truncated or replaced: start over
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return False
        with open(self.driver_log, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-65536:]
        for line in lines:
            for m in _METRIC.finditer(line):
                self.rollout = max(int(m.group(1)), self.rollout if self.rollout is not None else -1)
        return True

    def _tracker_moved(self, now: float) -> bool:
        if now < self.next_tracker:
            return False
        self.next_tracker = now + CHECK_EVERY_S
        state = _tracker_state(self.save_dir)
        moved = state is not None and state != self.tracker
        self.tracker = state if state is not None else self.tracker
        return moved

    def idle_s(self) -> float:
        """Seconds since the last progress (0 when there was some just now)."""
        now = self.clock()
        grew = self._read_log()
        if self._tracker_moved(now) or grew:
            self.last_progress = now
        return now - self.last_progress

    def where(self) -> str:
        return f"rollout {self.rollout}" if self.rollout is not None else "the start"


class Watchdog:
    """node 0's hook in the job's follow loop: `check()` raises Stalled once stall_s passed idle."""

    def __init__(self, node: Node, clock: Callable[[], float] = time.monotonic) -> None:
        self.node, self.spec = node, node.spec.watchdog
        self.progress = Progress(node.paths.driver_log, node.spec.resume.get("save_dir"), clock) if self.spec.stall_s else None

    def check(self) -> None:
        if self.progress is None:
            return
        idle = self.progress.idle_s()
        if idle >= float(self.spec.stall_s or 0):
            self._stall(idle)

    def _stall(self, idle: float) -> None:
        node, spec = self.node, self.spec
        what = (f"{node.what}: stalled {idle:.0f} s after {self.progress.where()} (no new metric line, checkpoint "
                f"or driver output for watchdog.stall_s = {spec.stall_s:g} s)")
        node.log.mark(f"watchdog: {what}; dumping the Python stacks of every node")
        report = dump_all(node, spec.dump_timeout_s)
        node.log.mark(f"watchdog: {report}")
        message = f"{what}; {report}"
        if spec.on_stall == "requeue":
            message += "; " + request_requeue(node)
        raise Stalled(message)


# --- stack dumps ----------------------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def job_processes(node: Node) -> list[tuple[int, str]]:
    """(pid, cmdline) of the driver and the Ray workers of this node's Ray (its process tree and
    tag), without Ray's daemons."""
    root = node.proc.pid if node.proc is not None and node.proc.poll() is None else None
    out = []
    for pid in sorted(find_tree(root, node.tag)):
        cmd = _cmdline(pid)
        if not cmd or pid == (node.proc.pid if node.proc else -1) or any(d in cmd for d in _DAEMONS):
            continue
        if cmd.startswith("ray::") or "default_worker.py" in cmd or "python" in cmd.split(" ", 1)[0]:
            out.append((pid, cmd))
    return out


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
    except OSError:
        return "gone"
    return f"state {stat}, kernel wait channel {wchan}"


def dump_stacks(pids: list[tuple[int, str]], py_spy: str | None) -> str:
    """One text with a section per process: py-spy's dump, or (without py-spy) the kernel state."""
    def one(item: tuple[int, str]) -> str:
        pid, cmd = item
        head = f"=== pid {pid}: {cmd[:300]}\n"
        if py_spy is None:
            return head + f"({_proc_state(pid)}; no py-spy here: pip install py-spy for Python stacks)\n"
        try:
            proc = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                                  timeout=PY_SPY_TIMEOUT_S)
            body = proc.stdout if proc.returncode == 0 else f"py-spy failed ({proc.returncode}): {proc.stderr.strip()}\n"
        except subprocess.TimeoutExpired:
            body = f"py-spy did not answer within {PY_SPY_TIMEOUT_S:g} s ({_proc_state(pid)})\n"
        except OSError as err:
            body = f"py-spy could not run: {err}\n"
        return head + body

    with ThreadPoolExecutor(max_workers=8) as pool:
        return "\n".join(pool.map(one, pids))


def stacks_dir(node: Node) -> Path:
    return node.paths.log_dir / "stacks"


def stacks_file(node: Node, node_id: int) -> Path:
    return stacks_dir(node) / f"node-{node_id}-{node.ident.hosts[node_id]}.txt"


def request_path(node: Node) -> Path:
    return node.paths.rdv_dir / "stacks-request.json"


def dump_here(node: Node, why: str) -> tuple[int, str]:
    """This node's stacks into its file; (processes dumped, method)."""
    py_spy = shutil.which("py-spy")
    procs = job_processes(node)
    method = "py-spy" if py_spy else "no py-spy: process states only"
    text = (f"# {why}\n# node {node.ident.node_id} ({node.ident.host}), {len(procs)} processes, {method}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n" + dump_stacks(procs, py_spy))
    path = stacks_file(node, node.ident.node_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # node 0 waits for the file: it appears whole
    return len(procs), method


def dump_all(node: Node, timeout_s: float) -> str:
    """Ask every node, dump here, wait (deadline) for the others; a one-line report."""
    others = [i for i in range(node.ident.num_nodes) if i != node.ident.node_id]
    if others:
        write_json_atomic(request_path(node), {"time": time.time(), "by": node.ident.host})
    count, method = dump_here(node, "stall: asked by the watchdog on node 0")
    deadline = time.monotonic() + timeout_s
    missing = others
    while missing and time.monotonic() < deadline:
        missing = [i for i in missing if not stacks_file(node, i).exists()]
        if missing:
            node.beat.beat()  # the workers must not take node 0 for lost meanwhile
            time.sleep(0.2)  # polling the shared FS for the other nodes' files, bounded by the deadline
    nodes = node.ident.num_nodes - len(missing)
    late = (f"; no stacks from {', '.join(node.ident.hosts[i] for i in missing)} within {timeout_s:g} s"
            if missing else "")
    return (f"Python stacks of {count} processes on {node.ident.host} and of {nodes - 1} other node(s) "
            f"({method}) in {stacks_dir(node)}{late}")


_ANSWERED: set[str] = set()  # runs (rendezvous dirs) this process has dumped its stacks for


def answer_stack_request(node: Node) -> None:
    """A worker node's hook in its wait loop: dump once when node 0 asked."""
    if str(node.paths.rdv_dir) in _ANSWERED or not request_path(node).exists():
        return
    _ANSWERED.add(str(node.paths.rdv_dir))
    count, method = dump_here(node, f"stall: asked by node 0 ({(read_json(request_path(node)) or {}).get('by')})")
    node.log.mark(f"watchdog: Python stacks of {count} processes ({method}) in {stacks_file(node, node.ident.node_id)}")


# --- requeue --------------------------------------------------------------------------------------

def request_requeue(node: Node, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """`scontrol requeue JOB`; Slurm then stops this run's steps (SIGTERM), so this process ignores
    SIGTERM from here on and finishes its own teardown (Slurm's KillWait bounds it)."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread: the launcher's handler stays
        pass
    try:
        proc = run(["scontrol", "requeue", node.ident.job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"requeue failed ({err}); the job ends here"
    if proc.returncode != 0:
        return f"scontrol requeue {node.ident.job_id} failed: {proc.stderr.strip() or proc.returncode}; the job ends here"
    return f"requeued (watchdog.on_stall: requeue): job {node.ident.job_id} runs again as restart {node.ident.restart + 1}"
