"""What a Slurm task of a stage runs (pickled by submitit, so it must stay importable and small):
the stage's command as a child process, with its output in the task's log, and its exit code
turned into the job's state."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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
