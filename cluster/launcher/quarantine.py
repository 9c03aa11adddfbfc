"""Bad-node quarantine: a node the launcher blames is left out of the requeued job.

Blamed (`NodeFault`, raised where the launcher finds it): a node lost mid-run (its launcher stopped
reporting, its Ray node turned DEAD, the head's API went away), a node that failed its GPU check
(the preflight's GPU findings, or it joined Ray with the wrong GPU count); and, when the Ray job
itself failed and nobody was blamed, the node the triage's lost-node rule names in this run's logs
(cluster/triage.py). A worker reports a fault of its own node in its heartbeat (`node_fault`), so
node 0 tells a broken node from one that merely stopped (a signal, a config error).

Node 0 acts (node 1 when node 0 itself was lost):
1. `decide` (pure): requeue only while `slurm.max_restarts` allows; leave the node out only while
   fewer than `slurm.max_excluded_nodes` nodes were left out of this job before (0: never), and only
   when the job's partition keeps enough usable nodes for the job without it (`sinfo`);
2. the decision goes into node 0's error message (done.json) and `restart-<n>/quarantine.json`,
   which `cluster.status` shows;
3. after this node's teardown: `scontrol requeuehold JOB`, `scontrol update JobId=JOB
   ExcNodeList=<old + new>`, `scontrol release JOB`. The job is held in between, so it cannot start
   again before the exclusion holds (Slurm refuses to change a running job's ExcNodeList).
Otherwise the job fails as it did before, and the message says why the node was not left out.
Inside the allocation the launcher calls `scontrol`/`sinfo` itself (the submit side's
cluster.slurm is not imported here).
"""
from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cluster.errors import ConfigError, HoldemClusterError, JobFailedError, NodeFault, RayStartError
from cluster.launcher.context import Node
from cluster.launcher.render import expand_nodelist
from cluster.launcher.rendezvous import read_json, write_json_atomic

RECORD = "quarantine.json"  # in the run's dir: restart-<n>/quarantine.json
SLURM_TIMEOUT_S = 30.0
# sinfo's compact states (%t) of a node Slurm can give a job now or soon; anything else (down,
# drain, fail, maint, a `*` for not responding, ...) does not count towards the job's nodes.
USABLE_STATES = frozenset({"idle", "mix", "alloc", "comp", "plnd", "resv", "mixed", "allocated", "completing",
                           "planned", "reserved"})
_GPU_CHECK = re.compile(r"^gpus?\d*$")

Run = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Blame:
    host: str
    why: str  # short: "lost mid-run: its Ray node is DEAD"


@dataclass(frozen=True)
class Decision:
    blame: Blame
    requeue: bool  # leave the node out and requeue; False: the job fails as before
    exclude: tuple[str, ...]  # the job's whole ExcNodeList after this (what was excluded + the node)
    summary: str  # one line, appended to the launcher's error


# --- where the launcher raises: faults that name a node ------------------------------------------

def peer_failure(node: Node, peer: int, message: str) -> HoldemClusterError:
    """The error for another node found failed (heartbeat watch): a NodeFault when it went silent
    (lost) or reported a fault of its own node; else a plain RayStartError (it stopped on a signal,
    a config error, ...: not the node's fault)."""
    host = node.ident.hosts[peer]
    beat = read_json(node.paths.heartbeat(peer)) or {}
    if beat.get("state") != "failed":
        return NodeFault(message, host=host, why="lost mid-run: its launcher stopped reporting")
    if beat.get("node_fault") == host:
        return NodeFault(message, host=host, why=str(beat.get("node_fault_why") or "its launcher blamed its node"))
    return RayStartError(message)


def heartbeat_fields(node: Node, err: BaseException) -> dict[str, str]:
    """What a failed heartbeat says about this node's own fault (for node 0's `peer_failure`)."""
    if isinstance(err, NodeFault) and err.host == node.ident.host:
        return {"node_fault": err.host, "node_fault_why": err.why}
    return {}


def preflight_fault(node: Node, findings: Sequence[Any], err: ConfigError) -> HoldemClusterError:
    """A preflight failure: a NodeFault on this node when a GPU check is what blocks, else `err`."""
    bad = [f for f in findings if not f.ok and f.blocking]
    gpu = next((f for f in bad if _GPU_CHECK.match(f.check)), None)
    if gpu is None:
        return err
    return NodeFault(str(err), host=node.ident.host, why=f"failed its GPU preflight: {gpu.check}: {gpu.message}")


# --- the decision ---------------------------------------------------------------------------------

def blame_of(node: Node, err: BaseException) -> Blame | None:
    """The node this failure is put on: a NodeFault's, else (the Ray job failed) the triage's."""
    if isinstance(err, NodeFault):
        return Blame(err.host, err.why)
    if isinstance(err, JobFailedError) and getattr(err, "final_state", "failed") == "failed":
        return triage_blame(node)
    return None


def triage_blame(node: Node) -> Blame | None:
    """The lost node the triage finds in this run's own logs, when it is one of this job's."""
    from cluster.triage import classify, log_files

    run_dir = node.paths.log_dir
    files = [p for p in log_files(run_dir.parent, node.ident.restart) if run_dir in p.parents]
    found = classify(files, root=run_dir.parent)
    if found is None or found.rule != "lost-node" or found.node not in node.ident.hosts:
        return None
    return Blame(found.node, f"named by the triage: {found.cause} [{found.file}]")


def acts(node: Node, blame: Blame) -> bool:
    """Node 0 decides; node 1 only when node 0 itself was lost (and has not finished)."""
    ident = node.ident
    if ident.is_head:
        return True
    return ident.node_id == 1 and blame.host == ident.hosts[0] and not node.paths.done.exists()


def usable(state: str) -> bool:
    """A node Slurm can give the job: not down/drained/failing/not responding (`*`); a node planned
    for another job (`-`) or powered down to save energy (`~`, `#`: powering up) still counts."""
    s = state.strip().lower()
    return not s.endswith("*") and s.rstrip("-~#") in USABLE_STATES


def decide(blame: Blame, *, restart: int, max_restarts: int | None, max_excluded: int,
           quarantined: Sequence[str], excluded_now: Sequence[str], num_nodes: int, partition: str,
           partition_states: Mapping[str, str] | None, sinfo_error: str = "",
           required: Sequence[str] = ()) -> Decision:
    """Whether to leave `blame.host` out of a requeued job (pure)."""
    host = blame.host

    def no(why: str) -> Decision:
        return Decision(blame, False, tuple(excluded_now), f"not leaving {host} out: {why}")

    if max_excluded <= 0:
        return no("slurm.max_excluded_nodes = 0 (quarantine off)")
    if not max_restarts or restart >= max_restarts:
        return no(f"no requeue left (restart {restart} of slurm.max_restarts = {max_restarts or 0})")
    left_out = list(dict.fromkeys(quarantined))
    if len(left_out) >= max_excluded:
        return no(f"slurm.max_excluded_nodes = {max_excluded} reached ({', '.join(left_out)} left out already)")
    if host in required:
        return no(f"the job asks for it by name (--nodelist {','.join(required)})")
    if partition_states is None:
        return no(f"cannot see partition {partition}'s nodes ({sinfo_error or 'sinfo failed'})")
    exclude = tuple(sorted({*excluded_now, host}))
    left = sorted(h for h, state in partition_states.items() if h not in exclude and usable(state))
    if len(left) < num_nodes:
        return no(f"partition {partition} would keep {len(left)} usable node(s) ({', '.join(left) or 'none'}) "
                  f"for this {num_nodes}-node job")
    return Decision(blame, True, exclude,
                    f"leaving {host} out of the requeued job ({blame.why}; {len(left_out) + 1} of "
                    f"slurm.max_excluded_nodes = {max_excluded}; ExcNodeList={','.join(exclude)})")


# --- what Slurm says (inside the allocation) --------------------------------------------------------

def _slurm(argv: list[str], run: Run) -> tuple[bool, str]:
    try:
        proc = run(argv, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{argv[0]}: {err}"
    if proc.returncode != 0:
        return False, (proc.stderr or proc.stdout or f"exit code {proc.returncode}").strip().splitlines()[-1]
    return True, proc.stdout


def parse_show_job(text: str) -> dict[str, str]:
    """`scontrol show job -o JOB` (one line of Key=Value) -> the keys quarantine reads."""
    out = {}
    for key in ("Partition", "ExcNodeList", "ReqNodeList", "NumNodes", "JobState"):
        m = re.search(rf"(?:^|\s){key}=(\S*)", text)
        if m:
            out[key] = m.group(1)
    return out


def parse_excluded(value: str | None) -> list[str]:
    """A job's ExcNodeList / ReqNodeList (`n[1,3]`, `(null)`) -> host names."""
    if not value or value == "(null)":
        return []
    try:
        return expand_nodelist(value)
    except ConfigError:
        return []


def parse_sinfo(text: str) -> dict[str, str]:
    """`sinfo -h -N -p PART -o %N|%t` -> host -> compact state (the first seen per host)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, _, state = line.strip().partition("|")
        if name and state:
            out.setdefault(name, state.strip())
    return out


def quarantined_before(job_dir: Path) -> list[str]:
    """Hosts this job left out on earlier runs (their records), oldest first."""
    out = []
    runs = sorted((p for p in job_dir.glob("restart-*") if p.name.removeprefix("restart-").isdigit()),
                  key=lambda p: int(p.name.removeprefix("restart-")))
    for run in runs:
        rec = read_json(run / RECORD) or {}
        if rec.get("left_out") and rec.get("requeued"):
            out.append(str(rec.get("node")))
    return out


def plan(node: Node, err: BaseException, run: Run = subprocess.run) -> Decision | None:
    """For the launcher's error path: the decision on the node `err` blames (None: nobody blamed,
    or another node acts). Asks Slurm about the job and its partition; never raises."""
    try:
        blame = blame_of(node, err)
        if blame is None or not acts(node, blame):
            return None
        return _plan(node, blame, run)
    except Exception as exc:  # noqa: BLE001 - the quarantine must never hide the real failure
        node.log.mark(f"quarantine: could not decide ({type(exc).__name__}: {exc})")
        return None


def _plan(node: Node, blame: Blame, run: Run) -> Decision:
    ident, spec = node.ident, node.spec
    ok, text = _slurm(["scontrol", "show", "job", "-o", ident.job_id], run)
    job = parse_show_job(text) if ok else {}
    partition = job.get("Partition") or "?"
    states, why = None, "" if ok else f"scontrol show job failed: {text}"
    if ok and job.get("Partition"):
        ok, out = _slurm(["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%t"], run)
        states, why = (parse_sinfo(out), "") if ok else (None, f"sinfo failed: {out}")
    decision = decide(blame, restart=ident.restart, max_restarts=spec.max_restarts,
                      max_excluded=spec.max_excluded_nodes, quarantined=quarantined_before(node.paths.log_dir.parent),
                      excluded_now=parse_excluded(job.get("ExcNodeList")), num_nodes=ident.num_nodes,
                      partition=partition, partition_states=states, sinfo_error=why,
                      required=parse_excluded(job.get("ReqNodeList")))
    record(node, decision, requeued=None, outcome="decided; the requeue follows this node's teardown"
           if decision.requeue else "the job fails here")
    return decision


def record(node: Node, decision: Decision, requeued: bool | None, outcome: str) -> Path:
    return write_json_atomic(node.paths.log_dir / RECORD, {
        "job_id": node.ident.job_id, "restart": node.ident.restart, "by": node.ident.host,
        "node": decision.blame.host, "why": decision.blame.why, "left_out": decision.requeue,
        "exclude": list(decision.exclude), "decision": decision.summary, "requeued": requeued,
        "outcome": outcome, "time": time.time()})


# --- the requeue ----------------------------------------------------------------------------------

def apply(node: Node, decision: Decision, run: Run = subprocess.run) -> str:
    """Requeue held, set ExcNodeList, release; record the outcome. Slurm then stops this run's steps
    (SIGTERM): this process ignores SIGTERM from here on and just exits (KillWait bounds it)."""
    job = node.ident.job_id
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread
        pass
    ok, text = _slurm(["scontrol", "requeuehold", job], run)
    if not ok:
        outcome = f"scontrol requeuehold {job} failed: {text}; the job ends here"
        record(node, decision, requeued=False, outcome=outcome)
        return f"quarantine: {outcome}"
    excl = ",".join(decision.exclude)
    ok, text = _slurm(["scontrol", "update", f"JobId={job}", f"ExcNodeList={excl}"], run)
    outcome = (f"requeued without {decision.blame.host} (ExcNodeList={excl}): job {job} runs again as restart "
               f"{node.ident.restart + 1}" if ok else
               f"requeued, but scontrol update JobId={job} ExcNodeList={excl} failed ({text}): the next run may "
               f"land on {decision.blame.host} again")
    released, text = _slurm(["scontrol", "release", job], run)
    if not released:
        outcome += f"; scontrol release {job} failed ({text}): the job stays held until `scontrol release {job}`"
    record(node, Decision(decision.blame, ok, decision.exclude if ok else (), decision.summary), requeued=True,
           outcome=outcome)
    return f"quarantine: {outcome} ({decision.blame.why})"
