"""Parsing Ray's API replies (captured from Ray 2.60.0) and the readiness verdicts."""
from __future__ import annotations

import json

from cluster.launcher.api import NodeInfo, parse_job, parse_nodes
from cluster.launcher.readiness import check_cluster, describe_gpus, find_dead

# GET /api/v0/nodes?detail=false from a one-node head started by the launcher (Ray 2.60.0).
NODES_REPLY = json.loads("""{"result": true, "msg": "", "data": {"result": {"total": 1,
 "num_after_truncation": 1, "num_filtered": 1, "result": [{"node_id":
 "99076cfa5755d7f7a1a6cab96260d612cab5ee39085dfd0bdbf451d4", "node_ip": "10.79.0.11",
 "is_head_node": true, "state": "ALIVE", "state_message": null, "node_name": "r1",
 "resources_total": {"memory": 24651112192.0, "node:10.79.0.11": 1.0, "CPU": 4.0,
 "node:__internal_head__": 1.0, "GPU": 4.0, "object_store_memory": 100000000.0}, "labels":
 {"ray.io/node-id": "99076cfa5755d7f7a1a6cab96260d612cab5ee39085dfd0bdbf451d4"}}],
 "partial_failure_warning": "", "warnings": null}}}""")

# GET /api/jobs/<id> of an entrypoint that ended with `exit 7` (message shortened).
JOB_REPLY = json.loads("""{"type": "SUBMISSION", "job_id": "02000000", "submission_id": "t1",
 "status": "FAILED", "message": "Job entrypoint command failed with exit code 7, last available logs (truncated to 20,000 chars):\\nhello\\n", "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
 "runtime_env": {"env_vars": {"FOO": "bar"}}, "driver_exit_code": 7}""")


def test_parse_nodes_reply() -> None:
    [node] = parse_nodes(NODES_REPLY)
    assert node == NodeInfo(node_id="99076cfa5755d7f7a1a6cab96260d612cab5ee39085dfd0bdbf451d4",
                            name="r1", ip="10.79.0.11", state="ALIVE", gpus=4, cpus=4, is_head=True)


def test_parse_job_reply() -> None:
    job = parse_job(JOB_REPLY)
    assert (job.status, job.driver_exit_code) == ("FAILED", 7)
    assert job.message.startswith("Job entrypoint command failed with exit code 7")
    running = parse_job({"status": "RUNNING", "message": None, "driver_exit_code": None})
    assert (running.status, running.message, running.driver_exit_code) == ("RUNNING", "", None)


def node(name: str, state: str = "ALIVE", gpus: int = 4) -> NodeInfo:
    return NodeInfo(node_id=name * 4, name=name, ip="10.0.0." + name[1:], state=state, gpus=gpus,
                    cpus=4, is_head=name == "n1")


HOSTS = ("n1", "n2", "n3")


def test_ready_only_when_every_host_alive_with_its_gpus() -> None:
    assert not check_cluster([node("n1"), node("n2")], HOSTS, 4, 12).ready
    verdict = check_cluster([node("n1"), node("n2"), node("n3")], HOSTS, 4, 12)
    assert verdict.ready and verdict.problem is None


def test_dead_node_is_a_problem_naming_it() -> None:
    v = check_cluster([node("n1"), node("n2", state="DEAD")], HOSTS, 4, 12)
    assert not v.ready and v.node == "n2" and "n2 is DEAD" in (v.problem or "")


def test_wrong_gpus_on_one_node_named_at_once() -> None:
    v = check_cluster([node("n1"), node("n3", gpus=2)], HOSTS, 4, 12)
    assert v.node == "n3" and "n3 joined Ray with 2 GPUs, expected 4" in (v.problem or "")


def test_total_against_what_slime_asks_lists_every_node() -> None:
    v = check_cluster([node("n1"), node("n2"), node("n3")], HOSTS, 4, 16)
    assert not v.ready
    assert "12 GPUs (n1: 4, n2: 4, n3: 4) but slime asks for 16" in (v.problem or "")


def test_stranger_node_is_a_problem() -> None:
    v = check_cluster([node("n1"), node("n9")], HOSTS, 4, 12)
    assert "unknown Ray node n9" in (v.problem or "")


def test_describe_and_find_dead() -> None:
    nodes = [node("n2"), node("n1"), node("n3", state="DEAD")]
    assert describe_gpus(nodes) == "8 GPUs (n1: 4, n2: 4)"
    assert find_dead(nodes, HOSTS) == "n3" and find_dead(nodes[:2], HOSTS) is None
