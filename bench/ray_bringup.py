"""Ray bring-up inside a Slurm allocation: the launcher against a bare sequence, same run.

For 1, 2 and 3 nodes, each repeat runs two `srun` steps of the same shape on the local cluster:
  launcher  `python3 -m cluster.launch --spec …` (ports probed, heartbeats, checks, phase log)
  bare      the same `ray start` commands (same argv/env renderers) with the same readiness
            polling (head API, head ALIVE, head file on the shared dir, N nodes ALIVE with GPUs)
Time is from task start (a timestamp the task writes before exec'ing Python) to "cluster ready".
Memory is RSS and PSS of each node's Ray processes (found by their tag) once the cluster is ready.
The launcher's ready file is found through the launcher's own `RendezvousPaths`, never a path
spelled out here. Times are printed with the ratio (target <= 1.15), never asserted.

    SLURM_CONF=… python3 bench/ray_bringup.py [--nodes 1,2,3] [--repeats 3] [--quick]

`--quick` (CI): 1 node, 1 repeat (about 25 s; the 2- and 3-node runs are the normal mode's).
In both modes the exit code is non-zero only when the bench itself breaks: a step never reaches
"cluster ready" (its srun step ends first, or the bring-up deadline passes once its tasks
started), a step exits non-zero, or no Ray process carries the head's tag.
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

from cluster.launcher.auth import create_token, read_token, render_auth_env, token_path  # noqa: E402
from cluster.launcher import api as ray_api  # noqa: E402
from cluster.launcher.spec import LaunchSpec, RaySpec  # noqa: E402
from cluster.launcher.node import POLL_S  # noqa: E402
from cluster.launcher.procs import find_tree  # noqa: E402
from cluster.launcher.render import (  # noqa: E402
    render_ports, render_slot_order, render_start_argv, render_start_env, render_temp_dir,
)
from cluster.launcher.rendezvous import RendezvousPaths  # noqa: E402

GPUS = 4
STORE = 100 * 1024 * 1024
DEADLINE_S = 180.0  # from the tasks' start to "cluster ready" (a broken bring-up, not a slow one)
QUEUE_DEADLINE_S = 900.0  # srun waiting for free nodes (other jobs may hold them)
SRUN_TIME_LIMIT_MIN = 20  # Slurm ends a step the bench failed to release
WAIT_RELEASE = ("import pathlib, sys, time\n"
                "end = time.monotonic() + 600\n"
                "while not pathlib.Path(sys.argv[1]).exists() and time.monotonic() < end:\n"
                "    time.sleep(0.1)\n")


class BenchError(Exception):
    """The bench itself broke (not a slow result): a step never got ready or failed."""


def wait_for(cond, what: str, timeout_s: float = DEADLINE_S, step: subprocess.Popen | None = None,
             work: Path | None = None):
    """cond()'s first truthy value, polled at the launcher's own interval; BenchError once the
    deadline passes or the srun `step` (if given) ends first."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        result = cond()
        if result:
            return result
        if step is not None and step.poll() is not None:
            raise BenchError(f"the srun step exited {step.returncode} before {what}{step_tails(work)}")
        time.sleep(POLL_S)  # the launcher's own polling interval
    raise BenchError(f"timed out after {timeout_s:g} s waiting for {what}{step_tails(work)}")


def step_tails(work: Path | None, lines: int = 20) -> str:
    """The last lines of the step's task outputs and the launcher's node logs, for errors."""
    if work is None:
        return ""
    chunks = []
    for path in sorted([*work.glob("srun-*.out"), *work.glob("chain/*/*/restart-*/node-*.log")]):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        chunks.append(f"\n--- {path}:\n" + "\n".join(tail))
    return "".join(chunks)


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
    # The task's own clock starts before Python does, identically for both variants; the job id
    # is written first (a shell builtin), so it costs neither variant anything measurable.
    wrapped = (f'echo "$SLURM_JOB_ID" > {work}/job-$SLURM_NODEID.tmp && mv {work}/job-$SLURM_NODEID.tmp '
               f'{work}/job-$SLURM_NODEID; date +%s.%N > {work}/start-$SLURM_NODEID.tmp && '
               f'mv {work}/start-$SLURM_NODEID.tmp {work}/start-$SLURM_NODEID; exec {command}')
    return subprocess.Popen(
        ["srun", "-N", str(nodes), "--ntasks-per-node=1", f"--gres=gpu:{GPUS}", f"--chdir={ROOT}",
         f"--time={SRUN_TIME_LIMIT_MIN}", f"--output={work}/srun-%t.out", "bash", "-c", wrapped],
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_started(step: subprocess.Popen, work: Path, nodes: int) -> tuple[str, float]:
    """(Slurm job id, the earliest task start) once every task of the step has started."""
    def started() -> bool:
        return all((work / f"start-{i}").exists() and (work / f"job-{i}").exists() for i in range(nodes))
    wait_for(started, f"the {nodes} task(s) of the srun step to start", QUEUE_DEADLINE_S, step, work)
    job_id = (work / "job-0").read_text().strip()
    return job_id, min(float((work / f"start-{i}").read_text()) for i in range(nodes))


def finish(step: subprocess.Popen, release: Path, work: Path) -> None:
    """Let the step's tasks end; BenchError if it does not end or exits non-zero."""
    release.touch()
    try:
        step.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        step.terminate()
        step.wait(timeout=60)
        raise BenchError(f"the srun step did not end within {DEADLINE_S:g} s of its release{step_tails(work)}")
    if step.returncode != 0:
        raise BenchError(f"the srun step exited {step.returncode}; see {work}{step_tails(work)}")


def stop_step(step: subprocess.Popen) -> None:
    """After a failure: end the step we started (srun forwards SIGTERM to its tasks, whose
    launchers then tear their Ray down)."""
    if step.poll() is None:
        step.terminate()
        try:
            step.wait(timeout=60)
        except subprocess.TimeoutExpired:
            step.kill()
            step.wait()


def run_launcher(nodes: int, work: Path) -> dict:
    release = work / "release"
    spec = LaunchSpec(chain_dir=str(work / "chain"), nodes=nodes, gpus_per_node=GPUS,
                      expected_gpus=nodes * GPUS,
                      entrypoint=["python3", "-c", WAIT_RELEASE, str(release)],
                      ray=RaySpec(object_store_memory=STORE, num_cpus=GPUS))
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    step = srun(nodes, work, f"python3 -m cluster.launch --spec {shlex.quote(str(spec_file))}")
    try:
        job_id, started = wait_started(step, work, nodes)
        # The launcher's own layout: the file it writes once all nodes joined with their GPUs.
        paths = RendezvousPaths.of(spec.chain_dir, spec.stage, job_id, restart=0)
        ready = wait_for(lambda: read_json(paths.ready), f"the launcher's {paths.ready}", DEADLINE_S, step, work)
        hb0 = read_json(paths.heartbeat(0)) or {}
        result = {"ready_s": ready["time"] - started,
                  "head": memory(f"{job_id}-0-0"),
                  "workers": [memory(f"{job_id}-{i}-0") for i in range(1, nodes)],
                  "launcher_rss": memory_of_pid(int(hb0.get("pid", 0)))}
        finish(step, release, work)
    finally:
        stop_step(step)
    return result


def memory_of_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def run_bare(nodes: int, work: Path) -> dict:
    step = srun(nodes, work, f"python3 {shlex.quote(__file__)} --bare-node {shlex.quote(str(work))} "
                             f"--bare-nodes {nodes}")
    try:
        job_id, started = wait_started(step, work, nodes)
        ready = wait_for(lambda: read_json(work / "ready.json"), "the bare sequence's ready.json", DEADLINE_S, step, work)
        result = {"ready_s": ready["time"] - started,
                  "head": memory(f"bare-{job_id}-0"),
                  "workers": [memory(f"bare-{job_id}-{i}") for i in range(1, nodes)]}
        finish(step, work / "release", work)
    finally:
        stop_step(step)
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
    token_file = token_path(work)  # token auth as the launcher runs it: node 0 mints, workers read
    if node_id == 0:
        address, token = None, create_token(token_file)
    else:
        address = wait_for(lambda: read_json(head_file), "bare head.json")["gcs"]
        token = read_token(token_file)
    argv = render_start_argv(head_address=address, node_ip=ip, node_name=socket.gethostname(),
                             ports=ports, num_gpus=GPUS, num_cpus=GPUS, object_store_memory=STORE,
                             temp_dir=temp)
    env = render_start_env(os.environ, ports, {}, tag, auth=render_auth_env("token", token_file))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if node_id == 0:
            base = f"http://{ip}:{ports.dashboard}"
            wait_for(lambda: _ok(lambda: ray_api.get_version(base, token=token)), "bare head API")
            wait_for(lambda: _ok(lambda: any(n.is_head and n.state == "ALIVE"
                                             for n in ray_api.list_nodes(base, token=token))), "bare head ALIVE")
            _write(head_file, {"gcs": f"{ip}:{ports.gcs}"})
            wait_for(lambda: _ok(lambda: _all_ready(base, nodes, token)), "bare cluster ready")
            _write(work / "ready.json", {"time": time.time(), "job_id": job_id})
        wait_for(lambda: (work / "release").exists(), "release", 600)
    finally:
        from cluster.launcher.procs import stop_owned
        stop_owned(proc, tag, 15)
        import shutil
        shutil.rmtree(temp, ignore_errors=True)
    return 0


def _ok(fn) -> bool:
    try:
        return bool(fn())
    except ray_api.ApiUnavailable:
        return False


def _all_ready(base: str, nodes: int, token: str) -> bool:
    alive = [n for n in ray_api.list_nodes(base, token=token) if n.state == "ALIVE"]
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
    p.add_argument("--quick", action="store_true",
                   help="1 node, 1 repeat, for CI: fails only if the bench itself breaks")
    p.add_argument("--bare-node", help=argparse.SUPPRESS)
    p.add_argument("--bare-nodes", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare_node:
        return bare_node(Path(args.bare_node), args.bare_nodes)
    if args.quick:
        args.nodes, args.repeats = "1", 1
    try:
        measure(sorted({int(n) for n in args.nodes.split(",")}), args.repeats)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def measure(node_counts: list[int], repeats: int) -> None:
    print(f"{'nodes':>5} {'launcher s':>11} {'bare s':>8} {'ratio':>6}  {'head RSS/PSS MiB':>17} "
          f"{'worker RSS/PSS MiB':>19} {'launcher RSS MiB':>17}", flush=True)
    ratios = []
    for nodes in node_counts:
        runs: dict[str, list[dict]] = {"launcher": [], "bare": []}
        for rep in range(repeats):
            order = ("launcher", "bare") if rep % 2 == 0 else ("bare", "launcher")
            for variant in order:
                with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-", dir="/tmp") as d:
                    fn = run_launcher if variant == "launcher" else run_bare
                    result = fn(nodes, Path(d))
                if result["head"][0] <= 0:  # the tag the launcher gives its Ray processes changed
                    raise BenchError(f"{variant}, {nodes} node(s): no Ray process carries the head's tag")
                runs[variant].append(result)
        lt = statistics.median(r["ready_s"] for r in runs["launcher"])
        bt = statistics.median(r["ready_s"] for r in runs["bare"])
        ratios.append((nodes, lt / bt))
        last = runs["launcher"][-1]
        head = f"{mib(last['head'][0])}/{mib(last['head'][1])}"
        work = (f"{mib(statistics.mean(w[0] for w in last['workers']))}/"
                f"{mib(statistics.mean(w[1] for w in last['workers']))}" if last["workers"] else "-")
        print(f"{nodes:>5} {lt:>11.2f} {bt:>8.2f} {lt / bt:>6.2f}  {head:>17} {work:>19} "
              f"{mib(last['launcher_rss']):>17}", flush=True)
        print(f"      all launcher: {[round(r['ready_s'], 2) for r in runs['launcher']]}  "
              f"all bare: {[round(r['ready_s'], 2) for r in runs['bare']]}", flush=True)
    for nodes, ratio in ratios:
        print(f"ratio launcher/bare, {nodes} node(s), median of {repeats}: {ratio:.2f}  "
              f"(target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
