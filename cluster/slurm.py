"""The one module that talks to Slurm: submit a plan through submitit, query and cancel jobs.

Slurm's query and control commands go through `run_slurm` (one seam). Submission uses submitit's
SlurmExecutor (parameters rendered from the plan's sbatch options) to write each job's files, and
runs sbatch itself through `SbatchPool`: sbatch processes started ahead that read the job script on
stdin, several at the same time, from one thread. Job states: one table mapping
Slurm's states to ours and parsers for `sacct`/`squeue` output (pure, tested on captured output).
"""
from __future__ import annotations

import functools
import getpass
import os
import re
import selectors
import shlex
import shutil
import subprocess
import threading
import time
import uuid
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


@dataclass
class _Prepared:
    """One stage's job, pickled and with its script rendered, waiting for sbatch."""
    stage: StagePlan
    executor: Any
    pickle: Path
    script: Path  # written once the script has gone to sbatch, with the job ids filled in
    text: str  # its `#SBATCH --dependency` line still names `${stage_id}`s
    dependency: str | None


def prepare_stage(stage: StagePlan, chain_dir: Path) -> _Prepared:
    """Pickle one stage's function and render its sbatch script as submitit would, with the plan's
    sbatch options; the job ids its dependency names are filled in when they are known."""
    # submitit counts time-outs against max_num_timeout (preemptions do not count, as in
    # submitit); TrainCommand.checkpoint caps all restarts at slurm.max_restarts.
    executor = _executor_class()(folder=chain_dir / stage.name / "%j", max_num_timeout=stage.max_restarts)
    params = render_executor_params(stage.slurm)
    if stage.srun:
        params["srun_args"] = list(stage.srun)
    executor.update_parameters(**params)
    dependency = stage.slurm.get("dependency")
    return _Prepared(stage, executor, *executor.write_job(_stage_function(stage)),
                     dependency=None if dependency is None else str(dependency))


def _final_script(job: _Prepared, ids: dict[str, str]) -> str:
    """The job's script with the job ids its dependency names."""
    if job.dependency is None:
        return job.text
    line = f"#SBATCH --dependency={shlex.quote(job.dependency)}\n"  # as submitit renders an option
    if job.text.count(line) != 1:
        raise SlurmError(f"stage {job.stage.name}: cannot find the line {line.strip()!r} in the sbatch script "
                         "submitit rendered; this submitit version is not supported (see pyproject.toml)")
    return job.text.replace(line, f"#SBATCH --dependency={shlex.quote(resolve_job_refs(job.dependency, ids))}\n")


def _remove_job_files(job: _Prepared) -> None:
    """The files of a job sbatch did not take."""
    job.pickle.unlink(missing_ok=True)
    job.script.unlink(missing_ok=True)


@functools.lru_cache(maxsize=None)
def _executor_class() -> type:
    """submitit's SlurmExecutor with its one-job submission split in two around sbatch, so that the
    caller runs sbatch (several at the same time, from a SbatchPool): `write_job` and
    `job_submitted` do what submitit's PicklingExecutor does before and after sbatch, with
    submitit's own helpers and file names (tests/integration/test_submission.py compares the two).
    Made once: submitit is imported only when something is really submitted."""
    import submitit
    from submitit.core import utils

    class Executor(submitit.SlurmExecutor):
        def write_job(self, fn: Callable[[], Any]) -> tuple[Path, Path, str]:
            """Pickle `fn` and render the sbatch script -> (pickle, where the script goes, its text)."""
            delayed = utils.DelayedSubmission(fn)
            folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            pickle = folder / f"{uuid.uuid4().hex}.pkl"
            delayed.set_timeout(self.parameters.get("time", 5), self.max_num_timeout)
            delayed.dump(pickle)
            uid = uuid.uuid4().hex
            return pickle, folder / f".submission_file_{uid}.sh", self._make_submission_file_text(
                self._submitit_command_str, uid)

        def job_id(self, sbatch_output: str) -> str | None:
            """The job id in what sbatch printed (submitit's parser), or None."""
            try:
                return self._get_job_id_from_submission_command(sbatch_output)
            except utils.FailedSubmissionError:
                return None

        def job_submitted(self, pickle: Path, script: Path, job_id: str) -> Any:
            """Move the job's files into its own folder, as submitit does once sbatch gave the id."""
            job = self.job_class(folder=self.folder, job_id=job_id, tasks=list(range(self._num_tasks())))
            job.paths.move_temporary_file(script, "submission_file", keep_as_symlink=True)
            self._write_job_id(job.job_id, script.stem.rpartition("_")[2])
            self._set_job_permissions(job.paths.folder)
            job.paths.move_temporary_file(pickle, "submitted_pickle")
            return job

    return Executor


SBATCH = "sbatch"


@dataclass
class Ended:
    """One sbatch run that has ended."""
    job: Any  # what the caller gave `submit`
    code: int
    stdout: str
    stderr: str


@dataclass
class _Run:
    job: Any
    proc: subprocess.Popen
    out: dict[int, bytearray]  # stdout's fd, then stderr's -> what they printed
    open_pipes: int = 2


class SbatchPool:
    """sbatch processes started ahead of their jobs, watched from one thread.

    Most of an sbatch run is its own start-up (loading Slurm's libraries, reading slurm.conf and its
    plugins: about 1.5 of its 3.5 ms on a quiet 2-core node). Given no script file, sbatch does all of
    that first and then reads the job script from standard input, so a process started early submits
    its job as soon as the script is written to it. A process that is never given a script gets an
    empty one when the pool closes and exits without submitting anything ("Batch script is empty").

    `submit` hands a job its script (to a spare process, or a new one), `finished` gives the runs that
    have ended with what they printed, `close` ends the spare ones. One thread, no sleeps: `finished`
    waits on the processes' pipes.
    """

    def __init__(self, ahead: int = 0) -> None:
        self._spare: list[subprocess.Popen] = []
        self._selector = selectors.DefaultSelector()
        self.running = 0
        # The first ones start from a thread: Popen returns only once the child has exec'd, time
        # the caller spends on its own work (making the plan) instead.
        self._starting: threading.Thread | None = None
        if ahead:  # quietly: without sbatch on PATH, the caller says so when it needs one
            self._starting = threading.Thread(target=self._start_spares, args=(ahead, True), name="sbatch-ahead")
            self._starting.start()

    def __enter__(self) -> "SbatchPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ahead(self, count: int) -> None:
        """Have at least `count` processes started and waiting for a script."""
        self._settle()
        self._start_spares(count)

    def _start_spares(self, count: int, quiet: bool = False) -> None:
        while len(self._spare) < count:
            try:
                self._spare.append(self._spawn())
            except SlurmError:
                if not quiet:
                    raise
                return  # the caller meets the same error when it starts one itself

    def _settle(self) -> None:
        """Wait for the thread starting the first processes (it ends within one process start each)."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None

    def _spawn(self) -> subprocess.Popen:
        try:
            # its own session: a Ctrl-C at the terminal reaches only us, and we wait for every sbatch
            # given a script (so we know its job id, and cancel it) instead of losing one mid-call
            return subprocess.Popen([SBATCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    bufsize=0, start_new_session=True)
        except OSError as exc:
            raise SlurmError(f"cannot run {SBATCH}: {exc}; is Slurm's client installed on this node?") from None

    def submit(self, job: Any, script: str) -> None:
        """Give `job`'s script to a waiting sbatch; its end comes out of `finished`."""
        self._settle()
        proc = self._spare.pop(0) if self._spare else self._spawn()
        data = memoryview(script.encode())
        try:
            while data:  # sbatch is waiting to read it all: a script larger than the pipe does not block for long
                data = data[os.write(proc.stdin.fileno(), data):]
        except BrokenPipeError:  # sbatch already ended (it says why on stderr, which `finished` reports)
            pass
        proc.stdin.close()
        run = _Run(job, proc, {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()})
        for pipe in (proc.stdout, proc.stderr):
            self._selector.register(pipe, selectors.EVENT_READ, run)
        self.running += 1

    def finished(self, block: bool) -> list[Ended]:
        """The runs that have ended; with `block`, waits until one has (sbatch bounds that itself:
        it gives up when slurmctld keeps not answering)."""
        done: list[Ended] = []
        while self.running and not done:
            for key, _ in self._selector.select(None if block else 0):
                run: _Run = key.data
                chunk = os.read(key.fd, 65536)
                if chunk:
                    run.out[key.fd] += chunk
                    continue
                self._selector.unregister(key.fileobj)
                key.fileobj.close()
                run.open_pipes -= 1
                if run.open_pipes == 0:
                    self.running -= 1
                    stdout, stderr = (bytes(text).decode(errors="replace") for text in run.out.values())
                    done.append(Ended(run.job, run.proc.wait(), stdout, stderr))
            if not block:
                break
        return done

    def close(self) -> None:
        """End the processes never given a script: each reads an empty one and exits, submitting
        nothing. Runs already given a script are the caller's to wait for (`finished`)."""
        self._settle()
        spare, self._spare = self._spare, []
        for proc in spare:
            proc.stdin.close()
            proc.stdin = None  # so communicate() only reads and waits
        for proc in spare:
            proc.communicate()


_JOB_REF = re.compile(r"\$\{(\w+)_id\}")


def unfillable_refs(stages: Sequence[StagePlan], known: Iterable[str] = ()) -> dict[str, list[str]]:
    """stage -> the `${stage_id}` references of its dependency that name neither a `known` stage
    nor one submitted before it (in plan order): such a stage could never be submitted. (pure)"""
    names = set(known)
    bad: dict[str, list[str]] = {}
    for stage in stages:
        if stage.skip:
            continue
        missing = sorted(set(_JOB_REF.findall(str(stage.slurm.get("dependency", "")))) - names)
        if missing:
            bad[stage.name] = missing
        names.add(stage.name)
    return bad


def cancel_jobs(job_ids: Sequence[str]) -> None:
    if job_ids:
        run_slurm(["scancel", *job_ids], check=False)


def submit_plan(plan: Plan, profile_data: dict[str, Any] | None = None, upstream: dict[str, str] | None = None,
                upstream_stages: Plan | None = None, pool: SbatchPool | None = None) -> dict[str, Any]:
    """Submit every stage that is not skipped, recording the chain. The stages' jobs are prepared
    one after the other, each with an sbatch process started for it (`pool`: started earlier, it
    may have some waiting already), and each goes to sbatch the moment the job ids its dependency
    names are known: data and model together, convert and train each right after the id it
    waits for. train's launch.json is written before train's job, the record while sbatch works.
    If Slurm refuses a stage (or a file cannot be written, or Ctrl-C), the stages not yet with
    sbatch are dropped and those submitted cancelled, so nothing is left half-submitted. A sweep
    point passes `upstream` (stage -> job id of the shared stages its dependencies name) and their
    plan, which the record lists first (marked `shared`)."""
    require_slurm()
    chain_dir = Path(plan.chain_dir)
    stages = [s for s in plan.stages if not s.skip]
    bad = unfillable_refs(stages, upstream or {})
    if bad:
        name, refs = next(iter(bad.items()))
        raise SlurmError(f"stage {name} depends on {', '.join(refs)}, which this submission does not submit "
                         "before it; nothing was submitted")
    chain_dir.mkdir(parents=True, exist_ok=True)
    for stage in stages:  # stages write into these; tools like holdem.data refuse a missing dir
        if stage.output:
            Path(stage.output).parent.mkdir(parents=True, exist_ok=True)
    pool = pool or SbatchPool()
    ids = dict(upstream or {})
    own: dict[str, str] = {}
    waiting: list[_Prepared] = []  # prepared, upstream ids not all known yet
    refused: dict[str, SlurmError] = {}
    failed: list[BaseException] = []  # anything else: a file not written, Ctrl-C
    record: dict[str, Any] | None = None

    def start_ready() -> None:
        for job in [j for j in waiting if set(_JOB_REF.findall(j.dependency or "")) <= ids.keys()]:
            waiting.remove(job)
            try:
                text = _final_script(job, ids)
                pool.submit(job, text)
            except SlurmError as exc:  # submitit's script not as expected, or sbatch cannot be run
                _remove_job_files(job)
                refused[job.stage.name] = exc
                continue
            try:  # after sbatch has it: the file is what submitit keeps beside the job
                job.script.write_text(text)
            except OSError as exc:  # the job is cancelled with the others
                failed.append(exc)

    def take(ended: list[Ended]) -> None:
        """Record what the ended sbatch runs gave; never raises, so no run is left unwatched."""
        for run in ended:
            job: _Prepared = run.job
            job_id = job.executor.job_id(run.stdout) if run.code == 0 else None
            if job_id is None:
                _remove_job_files(job)
                why = run.stderr.strip() or run.stdout.strip() or f"sbatch exited with {run.code} and printed nothing"
                refused[job.stage.name] = SlurmError(f"sbatch rejected stage {job.stage.name}: {one_line(why)}")
                continue
            own[job.stage.name] = ids[job.stage.name] = job_id
            if not (refused or failed):
                start_ready()  # the stages waiting for this id go to sbatch before its files are moved
            try:
                job.executor.job_submitted(job.pickle, job.script, job_id)
            except BaseException as exc:  # noqa: BLE001 - incl. Ctrl-C: the other ended runs are still taken
                failed.append(exc)

    try:
        try:
            for stage in stages:
                # at most one stage waits for ids at a time: the next is prepared once it has gone
                # to sbatch, when fewer sbatch runs compete for the CPU
                while waiting and pool.running and not (refused or failed):
                    take(pool.finished(block=True))
                if refused or failed:
                    break
                if stage.name == "train" and stage.launch is not None:
                    write_json_atomic(chain_dir / "train" / "launch.json", stage.launch.to_dict())
                waiting.append(prepare_stage(stage, chain_dir))
                pool.ahead(len(waiting))  # its sbatch starts up while it waits
                start_ready()
                take(pool.finished(block=False))
            else:
                record = _record(plan, profile_data, upstream_stages)  # while sbatch works
            while waiting and pool.running and not (refused or failed):
                take(pool.finished(block=True))
        except BaseException as exc:  # noqa: BLE001 - a file not written, or Ctrl-C: raised below
            failed.append(exc)
        finally:  # on every path every sbatch given a job ends here, so no job id is lost
            while pool.running:
                take(pool.finished(block=True))
            for job in waiting:
                _remove_job_files(job)
            pool.close()
        first = next((refused[s.name] for s in stages if s.name in refused), None)
        if first is not None or failed:
            raise first or failed[0]
    except BaseException as exc:  # cancel what was submitted
        cancel_jobs(list(own.values()))
        if not isinstance(exc, (SlurmError, KeyboardInterrupt)):
            raise
        own = {s.name: own[s.name] for s in stages if s.name in own}
        done = ", ".join(f"{n} ({j})" for n, j in own.items())
        why = str(exc) if isinstance(exc, SlurmError) else "interrupted (Ctrl-C) while submitting"
        write_chain(chain_dir, _with_job_ids(record or _record(plan, profile_data, upstream_stages),
                                             plan, own, upstream_stages, upstream, failed=why))
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(f"cancelled what was already submitted: {done}" if done else
                                    "nothing was submitted") from None
        raise SlurmError(f"{exc}. Cancelled what was already submitted: {done}." if done else str(exc)) from None
    record = _with_job_ids(record, plan, {s.name: own[s.name] for s in stages}, upstream_stages, upstream)
    write_chain(chain_dir, record)
    record["summary"] = render_summary(plan, ids)
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
