"""The one module that talks to Slurm: submit a plan through submitit, query and cancel jobs.

All Slurm commands go through `run_slurm` (one seam); submission goes through submitit's
SlurmExecutor with parameters rendered from the plan's sbatch options. Job states: one table mapping
Slurm's states to ours and parsers for `sacct`/`squeue` output (pure, tested on captured output).
"""
from __future__ import annotations

import functools
import getpass
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from cluster.chain import redact, write_chain
from cluster.errors import SlurmError
from cluster.outputs import write_json_atomic
from cluster.plan import Plan, StagePlan, resolve_job_refs

NO_SLURM = ("Slurm not found: sbatch is not on PATH. Run this on a login node of your cluster, or start "
            "a local one: run `bash scripts/local-slurm.sh up` as root; --dry-run works without Slurm.")
# sbatch option -> SlurmExecutor parameter; anything else goes to additional_parameters.
_NATIVE = {"job-name", "nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task", "mem", "partition",
           "account", "qos", "constraint", "exclusive", "dependency", "comment"}


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise SlurmError(NO_SLURM)


def run_slurm(argv: Sequence[str], timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run one Slurm client command; a failure becomes SlurmError with Slurm's own message."""
    if shutil.which(argv[0]) is None:
        raise SlurmError(NO_SLURM.replace("sbatch", argv[0], 1))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout:.0f} s; is slurmctld up? (`sinfo`)") from None
    if check and proc.returncode != 0:
        raise SlurmError(f"{' '.join(argv[:2])} failed: {one_line(proc.stderr or proc.stdout)}")
    return proc


def one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " / ".join(lines[-2:]) if lines else "(no message)"


def parse_time_minutes(text: str | int) -> int:
    """Slurm time (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) -> whole minutes, rounded up,
    as submitit wants."""
    if isinstance(text, int):
        return text
    days, _, rest = str(text).rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        h, m, sec = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        h, m, sec = parts
    else:
        h, (m, sec) = 0, (parts + [0])[:2]
    return int(days or 0) * 1440 + h * 60 + m + (sec > 0)


def render_executor_params(sbatch: dict[str, Any]) -> dict[str, Any]:
    """Plan sbatch options -> SlurmExecutor.update_parameters(**...) (pure)."""
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in sbatch.items():
        if key == "time":
            params["time"] = parse_time_minutes(value)
        elif key == "signal":
            params["signal_delay_s"] = int(str(value).rpartition("@")[2])
        elif key in _NATIVE:
            params[key.replace("-", "_")] = value
        else:
            extra[key] = value
    if "ntasks_per_node" not in params:
        params["ntasks_per_node"] = 1
    if extra:
        params["additional_parameters"] = extra
    return params


def _stage_function(stage: StagePlan):
    from cluster.launcher.stage import StageCommand, TrainCommand
    if stage.max_restarts > 0:
        return TrainCommand(stage.name, stage.step, dict(stage.env), max_restarts=stage.max_restarts)
    return StageCommand(stage.name, stage.step, dict(stage.env))


def submit_stage(stage: StagePlan, chain_dir: Path, job_ids: dict[str, str],
                 at_sbatch: threading.Event | None = None) -> str:
    """Submit one stage as the plan renders it, its `${stage_id}` dependency references filled in
    with the job ids of the stages already submitted; returns the job id. sbatch's complaint, if
    any, is in the SlurmError (callers catch what submitit prints with `_captured_stderr`).
    `at_sbatch` is set when submitit has written the job's files and starts sbatch."""
    Executor = _executor_class()
    sbatch = dict(stage.slurm)
    if "dependency" in sbatch:
        sbatch["dependency"] = resolve_job_refs(sbatch["dependency"], job_ids)
    # submitit counts time-outs against max_num_timeout (preemptions do not count, as in
    # submitit); TrainCommand.checkpoint caps all restarts at slurm.max_restarts.
    executor = Executor(folder=chain_dir / stage.name / "%j", max_num_timeout=stage.max_restarts)
    executor.at_sbatch = at_sbatch
    params = render_executor_params(sbatch)
    if stage.srun:
        params["srun_args"] = list(stage.srun)
    executor.update_parameters(**params)
    try:
        job = executor.submit(_stage_function(stage))
    except Exception as exc:  # submitit wraps sbatch's failure in several exception types
        raise SlurmError(f"sbatch rejected stage {stage.name}: {one_line(_sbatch_message(exc))}") from None
    return str(job.job_id)


@functools.lru_cache(maxsize=None)
def _executor_class() -> type:
    """submitit's SlurmExecutor, telling `at_sbatch` when it has written the job's files and is
    about to run sbatch (so the next stage's Python work can start). Made once: submitit is imported
    only when something is really submitted."""
    import submitit

    class Executor(submitit.SlurmExecutor):
        at_sbatch: threading.Event | None = None

        def _make_submission_command(self, submission_file_path):  # submitit runs this command next
            if self.at_sbatch is not None:
                self.at_sbatch.set()
            return super()._make_submission_command(submission_file_path)

    return Executor


_JOB_REF = re.compile(r"\$\{(\w+)_id\}")


def submission_waves(stages: Sequence[StagePlan], known: Iterable[str] = ()) -> list[list[StagePlan]]:
    """The stages to submit (not skipped), grouped so that every stage's `${stage_id}` references
    name stages of earlier groups (or `known` ones, already submitted): the stages of one group do
    not wait for each other and can go to sbatch at the same time. Plan order within a group. (pure)"""
    ids = set(known)
    pending = [s for s in stages if not s.skip]
    waves: list[list[StagePlan]] = []
    while pending:
        wave = [s for s in pending if set(_JOB_REF.findall(str(s.slurm.get("dependency", "")))) <= ids]
        wave = wave or pending[:1]  # a reference nothing will fill: submit_stage names it
        waves.append(wave)
        ids.update(s.name for s in wave)
        pending = [s for s in pending if s not in wave]
    return waves


def _submit_wave(wave: list[StagePlan], chain_dir: Path, job_ids: dict[str, str],
                 meanwhile: Callable[[], None] | None = None) -> tuple[dict[str, str], BaseException | None]:
    """Submit the stages of one wave at the same time, each in its own thread, and run `meanwhile`
    in this thread while sbatch works; -> (stage -> job id of those accepted, in plan order; the
    first refusal in plan order, or what `meanwhile` raised, or None). A thread is started once the
    one before it has handed its job to sbatch (their Python work does not overlap, sbatch's does),
    and every thread is joined before returning, so no job id is lost."""
    results: dict[str, str | SlurmError] = {}

    def one(stage: StagePlan, at_sbatch: threading.Event) -> None:
        try:
            results[stage.name] = submit_stage(stage, chain_dir, job_ids, at_sbatch)
        except SlurmError as exc:
            results[stage.name] = exc
        finally:
            at_sbatch.set()

    if len(wave) == 1 and meanwhile is None:  # nothing to overlap: no thread
        try:
            return {wave[0].name: submit_stage(wave[0], chain_dir, job_ids)}, None
        except SlurmError as exc:
            return {}, exc
    threads: list[threading.Thread] = []
    failure: BaseException | None = None
    try:
        for stage in wave:
            handed = threading.Event()
            threads.append(threading.Thread(target=one, args=(stage, handed), name=f"sbatch-{stage.name}"))
            threads[-1].start()
            handed.wait()  # set by the thread on every path: at sbatch, or when it has failed before
        if meanwhile is not None:
            meanwhile()
    except Exception as exc:  # noqa: BLE001 - reported after the threads are joined
        failure = exc
    finally:
        for thread in threads:
            thread.join()
    accepted = {s.name: r for s in wave if isinstance(r := results.get(s.name), str)}
    refused = next((r for s in wave if isinstance(r := results.get(s.name), SlurmError)), None)
    return accepted, refused or failure


@contextmanager
def _captured_stderr():
    """submitit prints sbatch's complaint to our stderr as well; drop that copy, so the user gets the
    one line the SlurmError makes of it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _sbatch_message(exc: Exception) -> str:
    for attr in ("stderr", "output"):
        value = getattr(exc, attr, None) or getattr(exc.__cause__, attr, None)
        if value:
            return value.decode() if isinstance(value, bytes) else str(value)
    text = str(exc)
    match = re.search(r"(sbatch: error: .*)", text)
    return match.group(1) if match else text


def cancel_jobs(job_ids: Sequence[str]) -> None:
    if job_ids:
        run_slurm(["scancel", *job_ids], check=False)


def submit_plan(plan: Plan, profile_data: dict[str, Any] | None = None, upstream: dict[str, str] | None = None,
                upstream_stages: Plan | None = None) -> dict[str, Any]:
    """Submit every stage that is not skipped, recording the chain: stages that do not wait for each
    other go to sbatch at the same time (`submission_waves`), and the launch spec and the record are
    written while the first ones are with sbatch. If Slurm refuses a stage (or a file cannot be
    written), cancel the stages already submitted so nothing is left half-submitted. A sweep point
    passes `upstream` (stage -> job id of the shared stages its dependencies name) and their plan,
    which the record lists first (marked `shared`)."""
    require_slurm()
    chain_dir = Path(plan.chain_dir)
    chain_dir.mkdir(parents=True, exist_ok=True)
    for stage in plan.stages:  # stages write into these; tools like holdem.data refuse a missing dir
        if not stage.skip and stage.output:
            Path(stage.output).parent.mkdir(parents=True, exist_ok=True)
    train = next((s for s in plan.stages if s.name == "train" and not s.skip), None)
    prepared: dict[str, Any] = {}
    # Work done while the first stages are with sbatch: the record (its job ids are added at the
    # end) and the train job's launch.json, which is always written before train is submitted.
    side_work: dict[str, Callable[[], Any]] = {
        "record": lambda: prepared.update(record=_record(plan, profile_data, upstream_stages))}
    if train is not None and train.launch is not None:
        side_work["launch"] = lambda: write_json_atomic(chain_dir / "train" / "launch.json", train.launch.to_dict())

    def do_side_work(*names: str) -> None:
        for name in names or list(side_work):
            task = side_work.pop(name, None)
            if task is not None:
                task()

    job_ids: dict[str, str] = dict(upstream or {})
    own: dict[str, str] = {}
    try:
        with _captured_stderr():
            for wave in submission_waves(plan.stages, job_ids):
                if train in wave:
                    do_side_work("launch")
                accepted, failure = _submit_wave(wave, chain_dir, job_ids, do_side_work if side_work else None)
                own.update(accepted)
                job_ids.update(accepted)
                if failure is not None:
                    raise failure
            do_side_work()  # when every stage is skipped
    except BaseException as exc:  # a refusal, a file not written, or Ctrl-C: cancel what was submitted
        cancel_jobs(list(own.values()))
        if not isinstance(exc, SlurmError):
            raise
        done = ", ".join(f"{n} ({j})" for n, j in own.items())
        write_chain(chain_dir, _with_job_ids(prepared.get("record") or _record(plan, profile_data, upstream_stages),
                                             plan, own, upstream_stages, upstream, failed=str(exc)))
        raise SlurmError(f"{exc}. Cancelled what was already submitted: {done}." if done else str(exc)) from None
    record = _with_job_ids(prepared["record"], plan, own, upstream_stages, upstream)
    write_chain(chain_dir, record)
    record["summary"] = render_summary(plan, job_ids)
    return record


def _record(plan: Plan, profile_data: dict[str, Any] | None, upstream: Plan | None = None) -> dict[str, Any]:
    """The chain record without its job ids (`_with_job_ids` adds them): the plan, the shared
    stages of a sweep point first, who submitted it and the profile (redacted)."""
    out = plan.to_dict()
    for stage in out["stages"]:
        stage.pop("launch", None)
    if upstream is not None:  # a sweep point: the shared stages it depends on, with their own log dirs
        shared = upstream.to_dict()["stages"]
        for stage in shared:
            stage["shared"] = True
            stage.pop("launch", None)
        out["stages"] = shared + out["stages"]
        out["upstream_chain"] = upstream.chain_id
    out.update(user=getpass.getuser(), submitted_at=None, submit_failed=None,
               profile_snapshot=redact(profile_data or {}))
    return out


def _with_job_ids(record: dict[str, Any], plan: Plan, job_ids: dict[str, str], upstream: Plan | None = None,
                  upstream_ids: dict[str, str] | None = None, failed: str | None = None) -> dict[str, Any]:
    for stage in record["stages"]:
        shared = stage.get("shared", False)
        ids, chain_dir = ((upstream_ids or {}), upstream.chain_dir) if shared and upstream else (job_ids, plan.chain_dir)
        stage["job_id"] = ids.get(stage["name"])
        stage["log_dir"] = f"{chain_dir}/{stage['name']}/{stage['job_id']}" if stage["job_id"] else None
    record.update(submitted_at=time.time(), submit_failed=failed)
    return record


def render_summary(plan: Plan, job_ids: dict[str, str]) -> str:
    lines = [f"chain {plan.chain_id} submitted ({len(job_ids)} job(s)); logs in {plan.chain_dir}/"]
    for stage in plan.stages:
        state = f"job {job_ids[stage.name]}" if stage.name in job_ids else "skipped"
        after = f" after {', '.join(d for d in stage.depends_on if d in job_ids)}" if any(d in job_ids for d in stage.depends_on) else ""
        lines.append(f"  {stage.name:8s} {state}{after}")
    lines.append(f"follow:  python -m cluster.logs {plan.chain_id} -f")
    lines.append(f"status:  python -m cluster.status {plan.chain_id}")
    return "\n".join(lines)


# --- job states ---------------------------------------------------------------------------------

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
