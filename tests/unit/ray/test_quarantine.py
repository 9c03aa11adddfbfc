"""Bad-node quarantine (cluster/launcher/quarantine.py): which failures blame a node, the bounded
decision, the scontrol calls in their order (a fake `run`), the run's record and what
cluster.status shows of it; the profile key reaching the launch spec."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.errors import ConfigError, Interrupted, JobFailedError, NodeFault, RayStartError
from cluster.launcher import quarantine
from cluster.launcher.context import Node
from cluster.launcher.preflight import Finding
from cluster.launcher.quarantine import Blame, decide
from cluster.launcher.rendezvous import Heartbeat, NodeLog, RendezvousPaths, write_json_atomic
from cluster.launcher.spec import LaunchSpec, SlurmIdentity
from cluster.status import read_runs, render_table

ROOT = Path(__file__).resolve().parents[3]
HOSTS = ("n1", "n2")


def make_node(tmp_path: Path, node_id: int = 0, restart: int = 0, max_restarts: int | None = 3,
              max_excluded: int = 1) -> Node:
    spec = LaunchSpec(chain_dir=str(tmp_path / "chain"), nodes=2, gpus_per_node=4, expected_gpus=8,
                      entrypoint=["python3", "train.py"], max_restarts=max_restarts, max_excluded_nodes=max_excluded)
    ident = SlurmIdentity("42", node_id, 2, HOSTS, restart, HOSTS[node_id])
    paths = RendezvousPaths.of(spec.chain_dir, "train", "42", restart)
    paths.rdv_dir.mkdir(parents=True, exist_ok=True)
    log = NodeLog(paths.node_log(node_id, HOSTS[node_id]), 0.0, echo=False)
    return Node(spec, ident, {}, paths, log, Heartbeat(paths.heartbeat(node_id), node_id, HOSTS[node_id]),
                tag=f"42-{node_id}-{restart}", temp_dir=str(tmp_path / "ray"))


class FakeSlurm:
    """Answers scontrol/sinfo like Slurm 22.05 does for a 2-node job on a 3-node partition."""

    def __init__(self, excluded: str = "(null)", states: str = "n1|mix\nn2|mix\nn3|idle\n",
                 fail: tuple[str, ...] = ()) -> None:
        self.calls: list[list[str]] = []
        self.excluded, self.states, self.fail = excluded, states, fail

    def __call__(self, argv, **_kw) -> subprocess.CompletedProcess:
        self.calls.append(list(argv))
        if any(" ".join(argv).startswith(f) for f in self.fail):
            return subprocess.CompletedProcess(argv, 1, "", f"{argv[0]}: error: refused {argv[1]}\n")
        if argv[:3] == ["scontrol", "show", "job"]:
            out = (f"JobId=42 JobName=holdem-train JobState=RUNNING Partition=debug NumNodes=2 "
                   f"ReqNodeList=(null) ExcNodeList={self.excluded} NodeList=n[1-2] Command=/x y\n")
            return subprocess.CompletedProcess(argv, 0, out, "")
        if argv[0] == "sinfo":
            return subprocess.CompletedProcess(argv, 0, self.states, "")
        return subprocess.CompletedProcess(argv, 0, "", "")


BLAME = Blame("n2", "lost mid-run: its Ray node is DEAD")
STATES = {"n1": "mix", "n2": "mix", "n3": "idle"}


def _decide(**kw):
    args = dict(restart=0, max_restarts=3, max_excluded=1, quarantined=[], excluded_now=[], num_nodes=2,
                partition="debug", partition_states=STATES)
    return decide(BLAME, **{**args, **kw})


def test_decide_leaves_the_node_out_while_bound_restarts_and_partition_allow():
    d = _decide(excluded_now=["n7"])  # the user's own --exclude stays in the list
    assert d.requeue and d.exclude == ("n2", "n7")
    assert "leaving n2 out of the requeued job" in d.summary and "1 of slurm.max_excluded_nodes = 1" in d.summary
    assert not _decide(max_excluded=0).requeue and "quarantine off" in _decide(max_excluded=0).summary
    assert "no requeue left (restart 3 of slurm.max_restarts = 3)" in _decide(restart=3).summary
    assert not _decide(max_restarts=None).requeue
    bound = _decide(max_excluded=1, quarantined=["n3"])
    assert not bound.requeue and "slurm.max_excluded_nodes = 1 reached (n3 left out already)" in bound.summary
    assert _decide(max_excluded=2, quarantined=["n4"]).requeue
    # never so many that the job cannot run: n3 drained leaves only n1 for a 2-node job
    small = _decide(partition_states={**STATES, "n3": "drain"})
    assert not small.requeue and "partition debug would keep 1 usable node(s) (n1) for this 2-node job" in small.summary
    assert not _decide(partition_states={"n1": "mix", "n2": "mix"}).requeue  # a 2-node partition
    assert _decide(partition_states={**STATES, "n3": "idle*"}).requeue is False  # not responding
    assert _decide(partition_states={**STATES, "n3": "idle~"}).requeue  # powered down: it powers up for the job
    pinned = _decide(required=["n1", "n2"])
    assert not pinned.requeue and "the job asks for it by name (--nodelist n1,n2)" in pinned.summary
    unseen = _decide(partition_states=None, sinfo_error="sinfo failed: boom")
    assert not unseen.requeue and "cannot see partition debug's nodes (sinfo failed: boom)" in unseen.summary


def test_parsers_read_what_slurm_prints():
    job = quarantine.parse_show_job("JobId=9 JobState=RUNNING Partition=debug,long NumNodes=2 ExcNodeList=n[1,3] X=y")
    assert job == {"Partition": "debug,long", "ExcNodeList": "n[1,3]", "NumNodes": "2", "JobState": "RUNNING"}
    assert quarantine.parse_show_job("ReqNodeList=n[1-2] ExcNodeList=(null)")["ReqNodeList"] == "n[1-2]"
    assert quarantine.parse_excluded("n[1,3]") == ["n1", "n3"] and quarantine.parse_excluded("(null)") == []
    assert quarantine.parse_sinfo("n1|mix\nn1|mix\nn2|drain\n\n") == {"n1": "mix", "n2": "drain"}


def test_which_failures_blame_a_node(tmp_path):
    head = make_node(tmp_path)
    worker = Heartbeat(head.paths.heartbeat(1), 1, "n2")
    worker.beat("ray started")
    assert isinstance(quarantine.peer_failure(head, 1, "m"), NodeFault)  # silent: lost
    worker.beat("failed", message="launcher got SIGUSR2")  # a signal: not the node's fault
    assert type(quarantine.peer_failure(head, 1, "m")) is RayStartError
    own = NodeFault("gpu0 broken", host="n2", why="failed its GPU preflight: gpu0: compute capability 7.0")
    worker = Heartbeat(head.paths.heartbeat(1), 1, "n2")  # a run where the worker's own check failed
    worker.beat("failed", message="x", **quarantine.heartbeat_fields(make_node(tmp_path, node_id=1), own))
    fault = quarantine.peer_failure(head, 1, "job 42: node 1 (n2) failed: x")
    assert isinstance(fault, NodeFault) and fault.host == "n2" and fault.why.startswith("failed its GPU preflight")
    assert quarantine.heartbeat_fields(head, own) == {}  # node 0 does not report n2's fault as its own

    err = ConfigError("job 42: preflight: gpu0: compute capability 7.0 is below 7.5")
    gpu = [Finding("gpu0", False, "compute capability 7.0 is below 7.5"), Finding("slime", True, "ok")]
    blamed = quarantine.preflight_fault(head, gpu, err)
    assert isinstance(blamed, NodeFault) and blamed.host == "n1" and str(blamed) == str(err)
    assert quarantine.preflight_fault(head, [Finding("package:pybase64", False, "missing")], err) is err

    assert quarantine.blame_of(head, RayStartError("x")) is None
    assert quarantine.blame_of(head, Interrupted("launcher got SIGUSR2")) is None
    # the Ray job failed and nobody was blamed: the triage's lost-node finding in this run's logs
    assert quarantine.blame_of(head, JobFailedError("driver exited 1")) is None
    head.paths.node_log(1, "n2").write_text("[+9.0s] error: job 42: Ray node on n2 is DEAD while job x was RUNNING\n")
    blame = quarantine.blame_of(head, JobFailedError("driver exited 1"))
    assert blame.host == "n2" and blame.why.startswith("named by the triage: lost node n2")


def test_only_node_0_acts_or_node_1_for_a_lost_head(tmp_path):
    assert quarantine.acts(make_node(tmp_path), BLAME)
    worker = make_node(tmp_path, node_id=1)
    assert not quarantine.acts(worker, BLAME)  # its own fault: node 0 acts on its heartbeat
    assert quarantine.acts(worker, Blame("n1", "lost mid-run: the head's API went away"))
    write_json_atomic(worker.paths.done, {"exit_code": 1})
    assert not quarantine.acts(worker, Blame("n1", "x"))  # node 0 finished: it decided


def test_plan_then_apply_requeues_held_excludes_and_releases(tmp_path, monkeypatch):
    monkeypatch.setattr(quarantine.signal, "signal", lambda *a: None)  # the test process keeps its handlers
    node, slurm = make_node(tmp_path), FakeSlurm(excluded="n7")
    err = NodeFault("job 42: Ray node on n2 is DEAD while job x was RUNNING", host="n2", why="lost mid-run: its Ray node is DEAD")
    decision = quarantine.plan(node, err, run=slurm)
    assert decision.requeue and decision.exclude == ("n2", "n7")
    rec = json.loads((node.paths.log_dir / "quarantine.json").read_text())
    assert rec["node"] == "n2" and rec["left_out"] and rec["requeued"] is None  # decided before teardown
    assert slurm.calls == [["scontrol", "show", "job", "-o", "42"], ["sinfo", "-h", "-N", "-p", "debug", "-o", "%N|%t"]]
    slurm.calls.clear()
    said = quarantine.apply(node, decision, run=slurm)
    assert slurm.calls == [["scontrol", "requeuehold", "42"], ["scontrol", "update", "JobId=42", "ExcNodeList=n2,n7"],
                           ["scontrol", "release", "42"]]
    assert "requeued without n2 (ExcNodeList=n2,n7): job 42 runs again as restart 1" in said
    rec = json.loads((node.paths.log_dir / "quarantine.json").read_text())
    assert rec["requeued"] and rec["left_out"] and rec["exclude"] == ["n2", "n7"]

    # the next run: n2 counts against the bound, so a second lost node fails the job
    again = make_node(tmp_path, restart=1)
    assert quarantine.quarantined_before(again.paths.log_dir.parent) == ["n2"]
    second = quarantine.plan(again, NodeFault("m", host="n3", why="lost mid-run: its Ray node is DEAD"),
                             run=FakeSlurm(excluded="n2,n7"))
    assert not second.requeue and "slurm.max_excluded_nodes = 1 reached (n2 left out already)" in second.summary

    runs = read_runs(str(again.paths.log_dir.parent))
    assert runs[0]["quarantine"]["node"] == "n2"
    rows = [{"stage": "train", "job_id": "42", "state": "RUNNING", "nodes": "n[1,3]", "elapsed": "", "restarts": 1,
             "exit_code": "", "reason": "", "log_dir": "", "runs": runs,
             "excluded_nodes": [{"node": "n2", "why": "lost mid-run: its Ray node is DEAD", "restart": 0}]}]
    text = render_table(rows)
    assert "train run 0: left n2 out of the requeued job (lost mid-run: its Ray node is DEAD)" in text
    assert "train run 1: blamed n3 (lost mid-run: its Ray node is DEAD): not leaving n3 out: slurm.max_excluded_nodes" in text
    assert "train: nodes left out (slurm.max_excluded_nodes): n2 (after run 0)" in text


def test_apply_failures_are_said_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(quarantine.signal, "signal", lambda *a: None)
    node = make_node(tmp_path)
    decision = quarantine.Decision(BLAME, True, ("n2",), "leaving n2 out")
    said = quarantine.apply(node, decision, run=FakeSlurm(fail=("scontrol requeuehold",)))
    assert "scontrol requeuehold 42 failed" in said and "the job ends here" in said
    assert json.loads((node.paths.log_dir / "quarantine.json").read_text())["requeued"] is False
    said = quarantine.apply(node, decision, run=FakeSlurm(fail=("scontrol update", "scontrol release")))
    assert "may land on n2 again" in said and "stays held until `scontrol release 42`" in said
    rec = json.loads((node.paths.log_dir / "quarantine.json").read_text())
    assert rec["requeued"] and not rec["left_out"]


def test_plan_never_raises_and_ignores_unblamed_failures(tmp_path):
    node = make_node(tmp_path)
    assert quarantine.plan(node, RayStartError("head API silent")) is None

    def missing(argv, **_k):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    def buggy(*_a, **_k):
        raise RuntimeError("a bug")

    d = quarantine.plan(node, NodeFault("m", host="n2", why="w"), run=missing)
    assert not d.requeue and "scontrol show job failed" in d.summary  # no scontrol: the job fails as before
    d = quarantine.plan(node, NodeFault("m", host="n2", why="w"), run=FakeSlurm(fail=("scontrol show",)))
    assert not d.requeue and "scontrol show job failed: scontrol: error: refused show" in d.summary
    assert quarantine.plan(node, NodeFault("m", host="n2", why="w"), run=buggy) is None
    assert "quarantine: could not decide (RuntimeError: a bug)" in node.log.path.read_text()


def test_spec_and_profile_carry_the_bound():
    spec = LaunchSpec(chain_dir="/c", nodes=1, gpus_per_node=1, expected_gpus=1, entrypoint=["x"])
    assert spec.max_excluded_nodes == 1 and LaunchSpec.from_dict(spec.to_dict()).max_excluded_nodes == 1
    with pytest.raises(ConfigError, match="max_excluded_nodes must not be negative"):
        LaunchSpec.from_dict({**spec.to_dict(), "max_excluded_nodes": -1})
    old = spec.to_dict()
    old.pop("max_excluded_nodes")  # a launch.json written before the key: the default
    assert LaunchSpec.from_dict(old).max_excluded_nodes == 1
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--nodes", "2", "--dry-run",
                           "--json", "--set", "slurm.max_excluded_nodes=2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    train = next(s for s in json.loads(proc.stdout)["stages"] if s["name"] == "train")
    assert train["launch"]["max_excluded_nodes"] == 2
    assert replace(spec, max_excluded_nodes=0).max_excluded_nodes == 0
