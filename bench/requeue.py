"""Preemption cost on the local Slurm: time from the warning signal (`scancel --signal=USR2`) to
the entrypoint running again, beside the plain bring-up time of the same 2-node train job
(job RUNNING -> entrypoint running) in the same run. Target: requeue <= bring-up + 10 s.

    python bench/requeue.py [--quick]   (needs `scripts/local-slurm.sh up` with >= 2 nodes)

There is one sample either way (a requeue costs ~30 s of Slurm's own time); `--quick` (CI) only
saves checkpoints more often, so the signal comes sooner. In both modes the exit code is
non-zero only when the bench itself breaks: the entrypoint never starts, never saves a
checkpoint, or does not run again after the requeue resuming from a checkpoint. The target is
printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _requeue_setup import records, saved, submit_train  # noqa: E402  (the same job tests/integration/test_requeue.py runs)
from verdict import verdict  # noqa: E402  (bench/ is on sys.path when a bench runs as a script)


QUEUE_DEADLINE_S = 900.0  # the job waiting for two free nodes (other jobs may hold them)


def wait(cond, what: str, deadline_s: float = 180.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {deadline_s} s waiting for {what}")


def job_start(job: str, deadline_s: float = 180.0) -> float:
    """When Slurm started the job's current run (sacct Start, as a Unix time)."""
    def start() -> float | None:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "Start,State", "-j", job], capture_output=True, text=True).stdout
        line = out.strip().splitlines()[-1] if out.strip() else ""
        stamp = line.split("|")[0]
        return datetime.fromisoformat(stamp).timestamp() if stamp[:1].isdigit() else None
    return wait(start, f"job {job} to start", deadline_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="checkpoints every 0.2 s, for CI: fails only if the bench breaks")
    args = parser.parse_args()
    interval_s = 0.2 if args.quick else 1.0
    with tempfile.TemporaryDirectory(prefix="bench-requeue-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        # Far more iterations than the bench waits for, and a hold file after the last one:
        # the job cannot end by itself before the signal, however slow the machine.
        hold = work / "hold"
        hold.touch()
        chain = submit_train(work, iterations=1000, interval_s=interval_s, hold=hold)
        job = chain["stages"][-1]["job_id"]
        try:
            started = job_start(job, QUEUE_DEADLINE_S)
            first = wait(lambda: records(work)[:1], "the entrypoint's first start")[0]
            bringup = first["time"] - started
            wait(lambda: saved(work) >= 1, "a checkpoint")
            signalled = time.time()
            subprocess.run(["scancel", "--signal=USR2", job], check=True)
            second = wait(lambda: records(work)[1:2], "the entrypoint to run again after the requeue")[0]
            requeue = second["time"] - signalled
            restarted = job_start(job)  # the requeued run's start: Slurm's own share ends here
            slurm_delay = restarted - signalled
        finally:
            subprocess.run(["scancel", job], check=False)
            # Its processes write into the work dir (logs, result pickles, core files) until
            # they are gone: remove the dir only once Slurm has ended the job.
            wait(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip(),
                 f"job {job} to leave the queue after scancel")
    problems = []
    if str(second.get("restart")) != "1":
        problems.append(f"the second start is not the job's first restart: {second}")
    if not second.get("load") or int(second.get("resumed_from") or 0) < 1:
        problems.append(f"the second start did not resume from a checkpoint: {second}")
    print(f"plain bring-up (job running -> entrypoint running, 2 nodes): {bringup:6.1f} s")
    print(f"requeue (USR2 -> entrypoint running again, resumed from iteration {second['resumed_from']}): {requeue:6.1f} s")
    print(f"  of which Slurm (USR2 -> requeued run starts; held >= AuthInfo cred_expire): {slurm_delay:6.1f} s")
    print(f"  of which ours (teardown + bring-up again):                                {requeue - slurm_delay:6.1f} s")
    print(f"requeue - bring-up = {requeue - bringup:+.1f} s; target <= +10 s -> {'met' if requeue <= bringup + 10 else 'NOT met'}")
    print(f"ratio requeue / bring-up: {requeue / bringup:.2f}")
    print(json.dumps({"bringup_s": round(bringup, 2), "requeue_s": round(requeue, 2), "slurm_requeue_delay_s": round(slurm_delay, 2)}))
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())
