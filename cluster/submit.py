"""python -m cluster.submit: check a profile and submit its chain (data -> model -> convert ->
train) to Slurm, or print the plan with --dry-run.

This path must stay fast: it never imports ray, torch or datasets (submitit only on submission).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Sequence

from cluster.checks import run_checks, scale_topology
from cluster.cli import ArgumentParser, run_cli
from cluster.errors import ConfigError
from cluster.plan import Plan, build_plan, parse_stages
from cluster.profile import Profile, available_profiles, load_profile

EXAMPLES = """\
examples:
  python -m cluster.submit --profile smoke --nodes 1 --dry-run      # print the plan, submit nothing
  python -m cluster.submit --profile full --nodes 2 --dry-run --json
  python -m cluster.submit --profile full --nodes 1                  # submit data->model->convert->train
  python -m cluster.submit --profile smoke --set rollout-batch-size=8 --set slurm.partition=gpu
  python -m cluster.submit --profile my.yaml --stages train          # only the train stage
  RUN_PROFILE=smoke HF_CHECKPOINT=/data/Qwen3-8B python -m cluster.submit --nodes 1

precedence (lowest first): base profile < the profile extending it < environment
  (HF_CHECKPOINT, REF_LOAD, SAVE_DIR, PROMPT_DATA, LOAD_CKPT) < --set < --nodes.
secrets (WANDB_API_KEY, HF_TOKEN) are read from the environment only, never from files or argv.
exit codes: 0 ok, 1 a job failed, 2 bad profile/arguments/check, 3 Slurm or infrastructure error.
"""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m cluster.submit",
        description="Check a profile and submit its chain of dependent Slurm jobs "
                    "(data -> model -> convert -> train), or print the plan.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default=os.environ.get("RUN_PROFILE"),
                        help=f"profile name from profiles/ ({', '.join(available_profiles())}) or a YAML path; "
                             "default: $RUN_PROFILE")
    parser.add_argument("--nodes", type=int, help="nodes for the train job; scales the topology (default: the profile's slurm.nodes)")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node (default: the profile's slurm.gpus_per_node)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile value: a dotted path (slurm.partition=gpu) or a slime flag name "
                             "(rollout-batch-size=8); VALUE is YAML (8, true, [a, b]). Repeatable.")
    parser.add_argument("--stages", help="comma-separated subset of data,model,convert,train (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything and print the request per stage (sbatch options, with dependencies as "
                             "${stage_id} references to the earlier stages' job ids, and the step srun runs); submit nothing")
    parser.add_argument("--json", action="store_true", help="print the plan (or the submitted chain) as one JSON object")
    parser.add_argument("--emit-sbatch", metavar="DIR",
                        help="write the exact sbatch scripts the chain would use (one per stage, launch.json, "
                             "submit-chain.sh) into DIR instead of submitting, for sites that require sbatch files")
    return parser


def make_plan(args, strict_paths: bool) -> tuple[Profile, Plan]:
    if not args.profile:
        raise ConfigError("no profile: pass --profile NAME (one of "
                          f"{', '.join(available_profiles())}) or set RUN_PROFILE.")
    profile = load_profile(args.profile, sets=args.sets)
    profile = scale_topology(profile, args.nodes, args.gpus_per_node)
    run_checks(profile)
    return profile, build_plan(profile, parse_stages(args.stages), strict_paths=strict_paths)


def render_plan_text(plan: Plan) -> str:
    lines = [f"chain {plan.chain_id}  profile {plan.profile} ({plan.profile_path})",
             f"  {plan.nodes} node(s) x {plan.gpus_per_node} GPU(s); logs in {plan.chain_dir}/"]
    for stage in plan.stages:
        state = "SKIP" if stage.skip else "RUN "
        after = f" after {', '.join(stage.depends_on)}" if stage.depends_on else ""
        lines.append(f"\n[{state}] {stage.name}{after}: {stage.reason}")
        opts = " ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in stage.slurm.items())
        lines.append(f"    sbatch {opts}")
        env = "".join(f"{k}={v} " for k, v in stage.env.items())
        lines.append(f"    srun   {' '.join([*stage.srun, env + shlex.join(stage.step)])}")
        if stage.slime_args is not None:
            lines.append("    slime  train.py " + " ".join(stage.slime_args))
    if plan.container.get("runtime", "none") != "none":
        lines.append(f"\ncontainer: {json.dumps(plan.to_dict()['container'])}")
    lines += [""] + [f"warning: {w}" for w in plan.warnings] if plan.warnings else []
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile, plan = make_plan(args, strict_paths=not (args.dry_run or args.emit_sbatch))
    if args.emit_sbatch:
        from cluster.sbatch_render import emit_sbatch
        written = emit_sbatch(plan, args.emit_sbatch)
        print("\n".join(str(p) for p in written) if written else "every stage is complete: nothing to write")
        return 0
    if args.dry_run:
        print(json.dumps(plan.to_dict(), indent=2) if args.json else render_plan_text(plan))
        return 0
    from cluster.slurm import submit_plan  # imports submitit: only when really submitting
    chain = submit_plan(plan, profile.data)
    print(json.dumps(chain, indent=2) if args.json else chain["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
