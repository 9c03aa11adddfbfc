"""STAND-IN for slime's `train.py`: the CPU demo's rollout-only driver (no GPU, no Megatron, no
SGLang here), run by the launcher as the Ray job's entrypoint on the head node with slime's
rendered arguments appended. It reads the ones it needs and ignores the rest, as slime would.

Per rollout: Ray tasks spread over the nodes (SPREAD, num_cpus=1) run the real holdem
`generate` + `reward_func` on stand-in Samples against the SGLang stand-in (started here, on the
head node's address, with a scripted policy: demo/policy.py); then the real
`log_rollout_data` and the metric lines slime itself would print (demo/slime_metrics.py: the
rollout's from the real samples, the train steps' STAND-IN values); then a checkpoint-like marker in the Megatron layout under --save and the
rollout report `<save>/report.json`. It resumes from --load [--ckpt-step] like slime (at the rollout
after the loaded one) and finishes at once when every rollout is already done.

    python -m demo.driver --num-rollout 4 --rollout-batch-size 8 ... (slime args)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

from demo.checkpoint import ResumeError, iter_dir, load_marker, save_marker, start_report, write_report
from demo.report import render_rollout_line, render_summary, summarize_rollout, summarize_run
from demo.rollout import Prompt, play_batch, warm_up

TASKS_PER_NODE = 1  # one rollout task per node: the demo targets a 2-core machine
TASK_TIMEOUT_S = 300.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"error: demo driver: {message}; it reads slime's arguments as the demo profile renders them "
              f"(python -m cluster.submit --profile demo --dry-run shows them)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="python -m demo.driver", description="CPU demo: rollout-only stand-in for slime's train.py",
                allow_abbrev=False)  # slime flags must never match ours by prefix
    p.add_argument("--num-rollout", type=int, required=True)
    p.add_argument("--rollout-batch-size", type=int, required=True)
    p.add_argument("--n-samples-per-prompt", type=int, default=1)
    p.add_argument("--prompt-data", required=True)
    p.add_argument("--input-key", default="input")
    p.add_argument("--label-key", default=None)
    p.add_argument("--hf-checkpoint", required=True)
    p.add_argument("--save", required=True)
    p.add_argument("--save-interval", type=int, default=None)
    p.add_argument("--load", default=None)
    p.add_argument("--ckpt-step", type=int, default=None)
    p.add_argument("--rollout-max-response-len", type=int, default=512)
    p.add_argument("--rollout-temperature", type=float, default=1.0)
    p.add_argument("--rollout-shuffle", action="store_true")
    p.add_argument("--seed", type=int, default=1234)
    # what slime's metric lines need (demo/slime_metrics.py)
    p.add_argument("--rollout-num-gpus", type=int, default=None)
    p.add_argument("--global-batch-size", type=int, default=None)
    p.add_argument("--reward-key", default=None)
    p.add_argument("--advantage-estimator", default="grpo")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--use-kl-loss", action="store_true")
    p.add_argument("--kl-loss-coef", type=float, default=0.0)
    p.add_argument("--entropy-coef", type=float, default=0.0)
    args, _ignored = p.parse_known_args(argv)
    return args


def say(text: str) -> None:
    print(f"[demo-driver {time.strftime('%H:%M:%S')}] {text}", flush=True)


class DemoInputError(Exception):
    """A bad argument or input file: one `error:` line, exit code 2."""


def load_prompts(path: str, input_key: str, label_key: str | None) -> list[tuple[str, str]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    row = json.loads(line)
                    rows.append((row[input_key], row.get(label_key, "") if label_key else ""))
    except OSError as err:
        raise DemoInputError(f"--prompt-data {path}: {err.strerror}. Run the chain's data stage first") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DemoInputError(f"--prompt-data {path} line {number}: not a JSON row with {input_key!r} ({err!r})") from None
    if not rows:
        raise DemoInputError(f"--prompt-data {path} has no rows")
    return rows


def rollout_prompts(rows: list[tuple[str, str]], args: argparse.Namespace, rollout_id: int) -> list[Prompt]:
    """The rollout's prompts, each n times (GRPO groups); the same for a rollout after a restart."""
    order = list(range(len(rows)))
    if args.rollout_shuffle:
        random.Random(args.seed).shuffle(order)
    out = []
    for g in range(args.rollout_batch_size):
        prompt, label = rows[order[(rollout_id * args.rollout_batch_size + g) % len(rows)]]
        out += [Prompt(len(out), g, prompt, label) for _ in range(args.n_samples_per_prompt)]
    return out


def resume_point(args: argparse.Namespace) -> tuple[int, str | None]:
    if not args.load:
        return 0, None
    try:
        loaded = load_marker(Path(args.load), args.ckpt_step)
    except ResumeError as err:
        raise DemoInputError(f"{err}. Remove --load / LOAD_CKPT to start fresh") from None
    if loaded is None:
        say(f"--load {args.load} holds no checkpoint yet: starting fresh (as slime does)")
        return 0, None
    return loaded.iteration + 1, str(loaded.path)


def cluster_nodes(ray: Any) -> list[dict[str, Any]]:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return [{"ip": n["NodeManagerAddress"], "name": n.get("NodeName") or n["NodeManagerAddress"],
             "cpus": n["Resources"].get("CPU", 0), "gpus": n["Resources"].get("GPU", 0)} for n in alive]


def start_workers(ray: Any, hf_checkpoint: str, tasks: int) -> Callable[[], str]:
    """One warm-up task per rollout task slot, started now; the returned call waits for them and
    says where they ran and how long it took (the driver starts its server meanwhile)."""
    t0 = time.monotonic()
    task = ray.remote(warm_up).options(scheduling_strategy="SPREAD", num_cpus=1)
    refs = [task.remote(hf_checkpoint) for _ in range(tasks)]

    def wait() -> str:
        hosts = ray.get(refs, timeout=TASK_TIMEOUT_S)
        where = " ".join(f"{h}:{hosts.count(h)}" for h in sorted(set(hosts)))
        return f"{tasks} Ray worker(s) ready (holdem imported, tokenizer loaded) on {where} in {time.monotonic() - t0:.1f} s"

    return wait


def run_rollout(ray: Any, remote: Any, config: dict, prompts: list[Prompt], rollout_id: int, tasks: int) -> tuple[list, list, float]:
    batches = max(1, min(len(prompts), tasks))
    parts = [prompts[i::batches] for i in range(batches)]
    t0 = time.monotonic()
    refs = [remote.options(scheduling_strategy="SPREAD", num_cpus=1).remote(config, part, rollout_id) for part in parts]
    results = ray.get(refs, timeout=TASK_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    samples = sorted((s for r in results for s in r["samples"]), key=lambda s: s.index)
    tasks = [{"host": r["host"], "samples": len(r["samples"]), "seconds": round(r["seconds"], 3)} for r in results]
    return samples, tasks, elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except DemoInputError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    save = Path(args.save)
    say(f"stand-in for slime's train.py (CPU demo): {args.num_rollout} rollouts x {args.rollout_batch_size} prompts "
        f"x {args.n_samples_per_prompt} samples, save to {save}")
    start, loaded = resume_point(args)
    rows = load_prompts(args.prompt_data, args.input_key, args.label_key)  # bad input fails before Ray
    this_run = {"started_at": time.time(), "resumed_from": loaded, "start_rollout": start,
                "head": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0")}
    report = start_report(save, this_run, args.num_rollout, start)
    if start >= args.num_rollout:
        report["complete"] = True
        write_report(save, report)
        say(f"all {args.num_rollout} rollouts are done already ({loaded}); nothing to do")
        return 0
    if loaded:
        say(f"resuming from {loaded}: continuing at rollout {start + 1} of {args.num_rollout}")
    run_rollouts(args, rows, save, report, start)
    report["complete"] = True
    write_report(save, report)
    say(f"report: {save / 'report.json'}\n" + render_summary(report))
    return 0


def run_rollouts(args: argparse.Namespace, rows: list[tuple[str, str]], save: Path, report: dict, start: int) -> None:
    import ray

    from demo.policy import demo_script
    from demo.sglang_standin import SGLangStandIn
    from holdem.chat import load_tokenizer
    from demo.slime_metrics import log_slime_metrics
    from holdem.metrics import log_rollout_data

    ray.init(address="auto", log_to_driver=False)
    nodes = report["runs"][-1]["ray_nodes"] = cluster_nodes(ray)
    say("Ray cluster: " + ", ".join(f"{n['name']} ({n['ip']}, {n['gpus']:g} GPUs)" for n in nodes))
    tasks = len(nodes) * TASKS_PER_NODE
    workers_ready = start_workers(ray, args.hf_checkpoint, tasks)
    ip = ray.util.get_node_ip_address()  # not loopback: tasks on other nodes must reach the server
    server = SGLangStandIn(load_tokenizer(args.hf_checkpoint), demo_script, host=ip).start()
    say(f"SGLang stand-in (scripted policy) listening at {server.url}")
    say("slime's metric lines follow every rollout (perf/rollout: from the real samples; step: STAND-IN "
        "train-side values, no training here: demo/slime_metrics.py)")
    config = {
        "args": {"sglang_router_ip": ip, "sglang_router_port": server.port, "hf_checkpoint": args.hf_checkpoint,
                 "rollout_max_response_len": args.rollout_max_response_len},
        "sampling_params": {"max_new_tokens": args.rollout_max_response_len, "temperature": args.rollout_temperature},
    }
    remote = ray.remote(play_batch)
    try:
        say(workers_ready())
        for rollout_id in range(start, args.num_rollout):
            samples, placed, elapsed = run_rollout(ray, remote, config, rollout_prompts(rows, args, rollout_id),
                                                   rollout_id, tasks)
            log_rollout_data(rollout_id, args, samples, None, elapsed)
            log_slime_metrics(rollout_id, args, samples, elapsed)  # slime's own metric lines
            entry = summarize_rollout(rollout_id, samples, placed, elapsed)
            saving = _should_save(rollout_id, args)
            if saving:
                entry["saved"] = iter_dir(save, rollout_id).name
            # The report first, the marker second: a run stopped in between has reported a
            # rollout it did not save, which the next run redoes (start_report drops it) rather
            # than a saved rollout missing from the report.
            report["rollouts"].append(entry)
            report["summary"] = summarize_run(report["rollouts"])
            write_report(save, report)
            if saving:
                save_marker(save, rollout_id, {"num_rollout": args.num_rollout})
            say(render_rollout_line(entry, args.num_rollout))
    finally:
        server.stop()


def _should_save(rollout_id: int, args: argparse.Namespace) -> bool:
    last = rollout_id == args.num_rollout - 1
    return last or (args.save_interval is not None and (rollout_id + 1) % args.save_interval == 0)


if __name__ == "__main__":
    sys.exit(main())
