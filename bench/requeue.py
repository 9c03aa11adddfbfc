"""Preemption cost on the local Slurm: time from the warning signal (`scancel --signal=USR2`) to
the entrypoint running again, beside the plain bring-up time of the same 2-node train job
(job RUNNING -> entrypoint running) in the same run. Target: requeue <= bring-up + 10 s.

    python bench/requeue.py          (needs `scripts/local-slurm.sh up` with >= 2 nodes)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_requeue import records, submit_train  # noqa: E402  (the same job the tests run)


def wait(cond, what: str, deadline_s: float = 180.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {deadline_s} s waiting for {what}")


def job_start(job: str) -> float:
    """When Slurm started the job's current run (sacct Start, as a Unix time)."""
    def start() -> float | None:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "Start,State", "-j", job], capture_output=True, text=True).stdout
        line = out.strip().splitlines()[-1] if out.strip() else ""
        stamp = line.split("|")[0]
        return datetime.fromisoformat(stamp).timestamp() if stamp[:1].isdigit() else None
    return wait(start, f"job {job} to start")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-requeue-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        chain = submit_train(work, iterations=1000, interval_s=1.0)
        job = chain["stages"][-1]["job_id"]
        try:
            first = wait(lambda: records(work)[:1], "the entrypoint's first start")[0]
            bringup = first["time"] - job_start(job)
            wait(lambda: (work / "Qwen3-8B_slime" / "latest_checkpointed_iteration.txt").exists(), "a checkpoint")
            signalled = time.time()
            subprocess.run(["scancel", "--signal=USR2", job], check=True)
            second = wait(lambda: records(work)[1:2], "the entrypoint to run again after the requeue")[0]
            requeue = second["time"] - signalled
            restarted = job_start(job)  # the requeued run's start: Slurm's own share ends here
            slurm_delay = restarted - signalled
        finally:
            subprocess.run(["scancel", job], check=False)
    print(f"plain bring-up (job running -> entrypoint running, 2 nodes): {bringup:6.1f} s")
    print(f"requeue (USR2 -> entrypoint running again, resumed from iteration {second['resumed_from']}): {requeue:6.1f} s")
    print(f"  of which Slurm (USR2 -> requeued run starts; held >= AuthInfo cred_expire): {slurm_delay:6.1f} s")
    print(f"  of which ours (teardown + bring-up again):                                {requeue - slurm_delay:6.1f} s")
    print(f"requeue - bring-up = {requeue - bringup:+.1f} s; target <= +10 s -> {'met' if requeue <= bringup + 10 else 'NOT met'}")
    print(json.dumps({"bringup_s": round(bringup, 2), "requeue_s": round(requeue, 2), "slurm_requeue_delay_s": round(slurm_delay, 2)}))


if __name__ == "__main__":
    main()
