"""What a Slurm task of a stage runs (pickled by submitit, so it must stay importable and small):
the stage's command as a child process, with its output in the task's log, and its exit code
turned into the job's state."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from cluster.errors import JobFailedError


@dataclass(frozen=True)
class StageCommand:
    """Run `argv` with `env` added to the job's environment; a non-zero exit fails the job."""

    stage: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self) -> int:
        env = {**os.environ, **self.env}
        if self.env.get("PYTHONPATH") and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = f"{self.env['PYTHONPATH']}:{os.environ['PYTHONPATH']}"
        node, task = os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("SLURM_PROCID", "0")
        print(f"[{self.stage} {node}] task {task}: {' '.join(self.argv)}", flush=True)
        proc = subprocess.Popen(list(self.argv), env=env)
        _RUNNING["proc"] = proc
        # Slurm signals every process of the step, the child included; pass on what reaches
        # us only so that a child that ignores the signal still hears it once.
        previous = {sig: signal.signal(sig, lambda s, _f: proc.send_signal(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        sys.stdout.flush()
        if code != 0:
            raise JobFailedError(f"stage {self.stage} on {node}: {self.argv[0]} exited with code {code}")
        return code


def _exited(pid: int) -> bool:
    """True once the process is gone or a zombie (this machine's init reaps late)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


@dataclass(frozen=True)
class TrainCommand(StageCommand):
    """The train stage: requeueable. Slurm's warning signal (preemption, or the time limit
    coming) reaches both this process and the launcher it runs; the launcher stops the Ray job
    and tears Ray down, and submitit calls `checkpoint` here, which waits for that and asks to
    be requeued with the same command (the launcher resolves `--load` from disk on restart)."""

    max_restarts: int = 3
    stop_grace_s: float = 60.0

    def checkpoint(self, *args, **kwargs):
        import submitit

        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        proc = _RUNNING.get("proc")
        if proc is not None:
            if not _exited(proc.pid):
                proc.send_signal(signal.SIGUSR2)  # in case Slurm signalled only this process
            deadline = time.monotonic() + self.stop_grace_s
            while not _exited(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)  # polls the launcher's teardown, bounded by stop_grace_s
            if not _exited(proc.pid):
                print(f"[train] launcher still running {self.stop_grace_s:.0f} s after the signal; sending SIGTERM", flush=True)
                proc.terminate()
        if restarts >= self.max_restarts:
            print(f"[train] not requeueing: restart {restarts} reached slurm.max_restarts = {self.max_restarts}", flush=True)
            return None
        print(f"[train] requeueing (restart {restarts + 1} of at most {self.max_restarts})", flush=True)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


_RUNNING: dict = {}  # the launcher child of this task, for checkpoint() (called from a signal handler)
