"""Ray bring-up inside a Slurm allocation: the launcher against a bare sequence, same run.

For 1, 2 and 3 nodes, each repeat runs two `srun` steps of the same shape on the local cluster:
  launcher  `python3 -m cluster.launch --spec …` (ports probed, heartbeats, checks, phase log)
  bare      the same `ray start` commands (same argv/env renderers) with the same readiness
            polling (head API, head ALIVE, head file on the shared dir, N nodes ALIVE with GPUs)
Time is from task start (a timestamp the task writes before exec'ing Python) to "cluster ready".
Memory is RSS and PSS of each node's Ray processes (found by their tag) once the cluster is ready.
Nothing is asserted: it prints figures and the ratio (target <= 1.15).

    SLURM_CONF=… python3 bench/ray_bringup.py [--nodes 1,2,3] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster import ray_api  # noqa: E402
from cluster.launch import LaunchSpec, RaySpec  # noqa: E402
from cluster.ray_cluster import POLL_S  # noqa: E402
from cluster.ray_procs import find_tree  # noqa: E402
from cluster.ray_render import (  # noqa: E402
    render_ports, render_slot_order, render_start_argv, render_start_env, render_temp_dir,
)

GPUS = 4
STORE = 100 * 1024 * 1024
DEADLINE_S = 180.0
WAIT_RELEASE = ("import pathlib, sys, time\n"
                "end = time.monotonic() + 600\n"
                "while not pathlib.Path(sys.argv[1]).exists() and time.monotonic() < end:\n"
                "    time.sleep(0.1)\n")


def wait_for(cond, what: str, timeout_s: float = DEADLINE_S):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        result = cond()
        if result:
            return result
        time.sleep(POLL_S)  # the launcher's own polling interval
    raise SystemExit(f"bench: timed out after {timeout_s:g} s waiting for {what}")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def memory(tag: str) -> tuple[int, int]:
    """(RSS, PSS) in bytes of every process carrying tag."""
    rss = pss = 0
    for pid in find_tree(None, tag):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def srun(nodes: int, work: Path, command: str) -> subprocess.Popen:
    # The task's own clock starts before Python does, identically for both variants.
    wrapped = f'date +%s.%N > {work}/start-$SLURM_NODEID; exec {command}'
    return subprocess.Popen(
        ["srun", "-N", str(nodes), "--ntasks-per-node=1", f"--gres=gpu:{GPUS}", f"--chdir={ROOT}",
         f"--output={work}/srun-%t.out", "bash", "-c", wrapped],
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def task_start(work: Path, nodes: int) -> float:
    return min(float((work / f"start-{i}").read_text()) for i in range(nodes))


def finish(step: subprocess.Popen, release: Path) -> None:
    release.touch()
    try:
        step.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        step.terminate()
        raise SystemExit("bench: srun step did not end after release")


def run_launcher(nodes: int, work: Path) -> dict:
    release = work / "release"
    spec = LaunchSpec(chain_dir=str(work / "chain"), nodes=nodes, gpus_per_node=GPUS,
                      expected_gpus=nodes * GPUS,
                      entrypoint=["python3", "-c", WAIT_RELEASE, str(release)],
                      ray=RaySpec(object_store_memory=STORE, num_cpus=GPUS))
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    step = srun(nodes, work, f"python3 -m cluster.launch --spec {shlex.quote(str(spec_file))}")
    ready_file = wait_for(lambda: next((work / "chain" / "train").glob("*/rendezvous/restart-0/ready.json"), None)
                          if (work / "chain" / "train").exists() else None, "launcher ready.json")
    ready = wait_for(lambda: read_json(ready_file), "ready.json content")
    job_id = ready_file.parents[2].name
    hb0 = read_json(ready_file.parent / "node-0.json") or {}
    result = {"ready_s": ready["time"] - task_start(work, nodes),
              "head": memory(f"{job_id}-0-0"),
              "workers": [memory(f"{job_id}-{i}-0") for i in range(1, nodes)],
              "launcher_rss": memory_of_pid(int(hb0.get("pid", 0)))}
    finish(step, release)
    if step.returncode != 0:
        raise SystemExit(f"bench: launcher step exited {step.returncode}; see {work}")
    return result


def memory_of_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def run_bare(nodes: int, work: Path) -> dict:
    step = srun(nodes, work, f"python3 {shlex.quote(__file__)} --bare-node {shlex.quote(str(work))} "
                             f"--bare-nodes {nodes}")
    ready = wait_for(lambda: read_json(work / "ready.json"), "bare ready.json")
    job_id = ready["job_id"]
    result = {"ready_s": ready["time"] - task_start(work, nodes),
              "head": memory(f"bare-{job_id}-0"),
              "workers": [memory(f"bare-{job_id}-{i}") for i in range(1, nodes)]}
    finish(step, work / "release")
    return result


def bare_node(work: Path, nodes: int) -> int:
    """One task of the bare sequence: the launcher's `ray start` commands and polling, nothing else."""
    import socket
    node_id, job_id = int(os.environ["SLURM_NODEID"]), int(os.environ["SLURM_JOB_ID"])
    ip = socket.gethostbyname(socket.gethostname())
    ports = render_ports(20000, render_slot_order(job_id, 0, 20000)[0])
    temp = render_temp_dir("/tmp", job_id, node_id, 0)
    tag = f"bare-{job_id}-{node_id}"
    head_file = work / "head.json"
    if node_id == 0:
        address = None
    else:
        address = wait_for(lambda: read_json(head_file), "bare head.json")["gcs"]
    argv = render_start_argv(head_address=address, node_ip=ip, node_name=socket.gethostname(),
                             ports=ports, num_gpus=GPUS, num_cpus=GPUS, object_store_memory=STORE,
                             temp_dir=temp)
    env = render_start_env(os.environ, ports, {}, tag)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if node_id == 0:
            base = f"http://{ip}:{ports.dashboard}"
            wait_for(lambda: _ok(lambda: ray_api.get_version(base)), "bare head API")
            wait_for(lambda: _ok(lambda: any(n.is_head and n.state == "ALIVE"
                                             for n in ray_api.list_nodes(base))), "bare head ALIVE")
            _write(head_file, {"gcs": f"{ip}:{ports.gcs}"})
            wait_for(lambda: _ok(lambda: _all_ready(base, nodes)), "bare cluster ready")
            _write(work / "ready.json", {"time": time.time(), "job_id": job_id})
        wait_for(lambda: (work / "release").exists(), "release", 600)
    finally:
        from cluster.ray_procs import stop_owned
        stop_owned(proc, tag, 15)
        import shutil
        shutil.rmtree(temp, ignore_errors=True)
    return 0


def _ok(fn) -> bool:
    try:
        return bool(fn())
    except ray_api.ApiUnavailable:
        return False


def _all_ready(base: str, nodes: int) -> bool:
    alive = [n for n in ray_api.list_nodes(base) if n.state == "ALIVE"]
    return len(alive) == nodes and sum(n.gpus for n in alive) == nodes * GPUS


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,2,3")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bare-node", help=argparse.SUPPRESS)
    p.add_argument("--bare-nodes", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_node:
        return bare_node(Path(args.bare_node), args.bare_nodes)
    print(f"{'nodes':>5} {'launcher s':>11} {'bare s':>8} {'ratio':>6}  {'head RSS/PSS MiB':>17} "
          f"{'worker RSS/PSS MiB':>19} {'launcher RSS MiB':>17}")
    for nodes in (int(n) for n in args.nodes.split(",")):
        runs: dict[str, list[dict]] = {"launcher": [], "bare": []}
        for rep in range(args.repeats):
            order = ("launcher", "bare") if rep % 2 == 0 else ("bare", "launcher")
            for variant in order:
                with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-", dir="/tmp") as d:
                    fn = run_launcher if variant == "launcher" else run_bare
                    runs[variant].append(fn(nodes, Path(d)))
        lt = statistics.median(r["ready_s"] for r in runs["launcher"])
        bt = statistics.median(r["ready_s"] for r in runs["bare"])
        last = runs["launcher"][-1]
        head = f"{mib(last['head'][0])}/{mib(last['head'][1])}"
        work = (f"{mib(statistics.mean(w[0] for w in last['workers']))}/"
                f"{mib(statistics.mean(w[1] for w in last['workers']))}" if last["workers"] else "-")
        print(f"{nodes:>5} {lt:>11.2f} {bt:>8.2f} {lt / bt:>6.2f}  {head:>17} {work:>19} "
              f"{mib(last['launcher_rss']):>17}", flush=True)
        print(f"      all launcher: {[round(r['ready_s'], 2) for r in runs['launcher']]}  "
              f"all bare: {[round(r['ready_s'], 2) for r in runs['bare']]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
