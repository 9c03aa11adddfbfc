"""Job states from Slurm: one table mapping Slurm's states to ours, parsers for `sacct` and
`squeue` output (pure, tested on captured output), and one query for a set of job ids."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# Slurm state -> our state. Anything not here is shown as Slurm names it.
STATE_TABLE = {
    "PENDING": "PENDING", "CONFIGURING": "PENDING", "REQUEUED": "PENDING", "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING", "RESV_DEL_HOLD": "PENDING", "SPECIAL_EXIT": "PENDING",
    "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "RESIZING": "RUNNING", "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "SUSPENDED": "SUSPENDED", "STOPPED": "SUSPENDED",
    "COMPLETED": "COMPLETED",
    "FAILED": "FAILED", "NODE_FAIL": "FAILED", "BOOT_FAIL": "FAILED", "OUT_OF_MEMORY": "FAILED",
    "DEADLINE": "FAILED", "REVOKED": "FAILED",
    "TIMEOUT": "TIMEOUT",
    "PREEMPTED": "PREEMPTED",
    "CANCELLED": "CANCELLED",
}
FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED"}
SACCT_FIELDS = "JobIDRaw,State,NodeList,Elapsed,ExitCode,Reason"


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # ours, from STATE_TABLE
    slurm_state: str
    nodes: str
    elapsed: str
    exit_code: str
    restarts: int
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL


def map_state(slurm_state: str) -> str:
    """`CANCELLED by 0` -> CANCELLED; unknown states pass through."""
    word = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else "UNKNOWN"
    return STATE_TABLE.get(word, word)


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """`sacct -D -X -P -n -o JobIDRaw,State,NodeList,Elapsed,ExitCode,Reason`: with -D every
    run of a requeued job is a row; the last row is the current run, the count the restarts."""
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) < 5 or not cols[0].strip():
            continue
        rows.setdefault(cols[0].strip(), []).append(cols)
    out = {}
    for job_id, runs in rows.items():
        cols = runs[-1] + [""] * 6
        out[job_id] = JobInfo(job_id, map_state(cols[1]), cols[1].strip(), cols[2].strip(), cols[3].strip(),
                              cols[4].strip(), len(runs) - 1, cols[5].strip())
    return out


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """`squeue -h -o %i|%T|%N|%M|%r` (only jobs the controller still holds)."""
    out = {}
    for line in text.splitlines():
        cols = line.split("|") + [""] * 5
        if cols[0].strip():
            out[cols[0].strip()] = JobInfo(cols[0].strip(), map_state(cols[1]), cols[1].strip(), cols[2].strip(),
                                           cols[3].strip(), "", 0, cols[4].strip())
    return out


def query_jobs(job_ids: Iterable[str]) -> dict[str, JobInfo]:
    """States of these jobs: sacct (history, restarts), then squeue for what sacct lacks yet."""
    from cluster.slurm import run_slurm

    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    proc = run_slurm(["sacct", "-D", "-X", "-P", "-n", "-o", SACCT_FIELDS, "-j", ",".join(ids)], check=False)
    jobs = parse_sacct(proc.stdout) if proc.returncode == 0 else {}
    missing = [j for j in ids if j not in jobs]
    if missing:
        proc = run_slurm(["squeue", "-h", "-o", "%i|%T|%N|%M|%r", "-j", ",".join(missing)], check=False)
        jobs.update(parse_squeue(proc.stdout) if proc.returncode == 0 else {})
    return jobs
