"""python -m cluster.submit: check a profile and submit its chain (data -> model -> convert ->
train) to Slurm, or print the plan with --dry-run.

This path must stay fast: it never imports ray, torch or datasets (submitit only on submission).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from cluster.profile.checks import run_checks, scale_topology
from cluster.cli import ArgumentParser, run_cli
from cluster.errors import ConfigError
from cluster.plan import STAGE_OUTPUT, Plan, build_plan, parse_stages
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
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="sweep KEY (as in --set) over the values; several --sweep make a grid. The upstream "
                             "stages run once, then one train (+ eval) chain per point, each saving under "
                             "<paths.save>/sweep-<point>. Repeatable.")
    parser.add_argument("--sweep-file", metavar="FILE",
                        help="a YAML/JSON list of override sets, one per point: [{lr: 1.0e-6, eps-clip-high: 0.28}, ...]")
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
    return profile, build_plan(profile, parse_stages(args.stages, profile), strict_paths=strict_paths)


def make_sweep(args, strict_paths: bool):
    """`--sweep`/`--sweep-file`: every point checked like a single chain before anything is submitted
    (cluster/sweep.py); returns (sweep plan, [(profile, plan) per point])."""
    from cluster.sweep import build_sweep, grid, parse_sweep_args, read_sweep_file

    if args.sweep and args.sweep_file is not None:
        raise ConfigError("--sweep and --sweep-file: give one of them (a file holds the whole list of points).")
    if not args.profile:
        raise ConfigError("no profile: pass --profile NAME (one of "
                          f"{', '.join(available_profiles())}) or set RUN_PROFILE.")
    points = read_sweep_file(args.sweep_file) if args.sweep_file is not None else grid(parse_sweep_args(args.sweep))
    base = load_profile(args.profile, sets=args.sets)
    stages = parse_stages(args.stages, base)
    built: list[tuple[Profile, Plan]] = []

    def build_point(sets: list[str], chain_id: str) -> tuple[Profile, Plan]:
        profile = scale_topology(load_profile(args.profile, sets=[*args.sets, *sets]), args.nodes, args.gpus_per_node)
        run_checks(profile)
        built.append((profile, build_plan(profile, stages, chain_id=chain_id, strict_paths=strict_paths)))
        return built[-1]

    return build_sweep(points, base, build_point, stages), built


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


def _top_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (what creating it would add)."""
    missing = None
    while not os.path.lexists(path) and path != path.parent:
        missing, path = path, path.parent
    return missing


def check_writable_dir(path: str | Path, what: str, fix: str, probed: set[Path] | None = None) -> None:
    """ConfigError unless `path` is, or can be created as, a directory this user can write in. Probes
    by creating and removing a temporary file in the nearest existing directory: nothing stays.
    `probed`: directories already probed by the caller (skipped), and where this one is added."""
    target = Path(os.path.abspath(path))
    existing = target
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {target}: {existing} is not a directory; nothing was written. {fix}")
    if probed is not None:
        if existing in probed:
            return
        probed.add(existing)
    try:
        fd, probe = tempfile.mkstemp(prefix=".holdem-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{what} {target}: cannot write in {existing} ({exc.strerror or exc}); nothing was "
                          f"written. {fix}") from None


def _log_dir_fix(profile: Profile) -> str:
    return (f"Set paths.log_dir (now from {profile.where('paths.log_dir')}) to a directory you can write, "
            "e.g. --set paths.log_dir=$HOME/holdem-logs.")


def emit_all_or_nothing(plan: Plan, profile: Profile, out_dir: str) -> list[Path]:
    """`--emit-sbatch DIR`: check that DIR and the chain's log dir can be written, then write; if a
    write fails anyway, remove what this call created, so nothing is left half-written."""
    from cluster.sbatch_render import emit_sbatch

    if not out_dir.strip():
        raise ConfigError("--emit-sbatch needs a directory, e.g. --emit-sbatch sbatch-out.")
    targets = {Path(os.path.abspath(out_dir)): ("--emit-sbatch", "Pick a directory you can write."),
               Path(plan.chain_dir): ("the chain's log dir", _log_dir_fix(profile))}
    for target, (what, fix) in targets.items():
        check_writable_dir(target, what, fix)
    created = [m for m in (_top_missing(t) for t in targets) if m is not None]
    before = {t: set(os.listdir(t)) for t in targets if t.is_dir()}
    try:
        return emit_sbatch(plan, out_dir)
    except OSError as exc:
        for root in created:
            shutil.rmtree(root, ignore_errors=True)
        for target, names in before.items():
            new = set(os.listdir(target)) - names if target.is_dir() else set()
            for entry in (target / name for name in new):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise ConfigError(f"--emit-sbatch {out_dir}: writing {exc.filename or 'a file'} failed ({exc.strerror or exc}); "
                          "removed what was written, nothing is left half-written.") from None


def check_before_submit(plan: Plan, profile: Profile) -> None:
    """Before anything reaches Slurm: the chain's log dir and every running stage's output dir can be
    created and written (a failure here submits nothing)."""
    probed: set[Path] = set()  # the stages' dirs often share their nearest existing one: probe it once
    check_writable_dir(plan.chain_dir, "the chain's log dir", _log_dir_fix(profile), probed)
    keys = {**STAGE_OUTPUT, "train": "paths.save"}
    for stage in plan.stages:
        if not stage.skip and stage.output:
            key = keys.get(stage.name, "its output")
            check_writable_dir(Path(stage.output).parent, f"stage {stage.name} writes {key} = {stage.output}; its directory",
                               f"Fix {key} (now from {profile.where(key)}) or the directory's permissions.", probed)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sweep or args.sweep_file is not None:
        return main_sweep(args)
    if args.dry_run or args.emit_sbatch is not None:
        profile, plan = make_plan(args, strict_paths=False)
        if args.emit_sbatch is not None:
            written = emit_all_or_nothing(plan, profile, args.emit_sbatch)
            print("\n".join(str(p) for p in written) if written else "every stage is complete: nothing to write")
        else:
            print(json.dumps(plan.to_dict(), indent=2) if args.json else render_plan_text(plan))
        return 0
    chain = submit_chain(args)
    print(json.dumps(chain, indent=2) if args.json else chain["summary"])
    return 0


def submit_chain(args) -> dict:
    """Plan, check and submit one chain -> its record. sbatch processes for the first stages start
    up while the plan is made (cluster.slurm.SbatchPool); they submit nothing unless it passes every check."""
    from cluster.slurm import SbatchPool, submit_plan

    with SbatchPool(ahead=2) as pool:
        profile, plan = make_plan(args, strict_paths=True)
        check_before_submit(plan, profile)
        return submit_plan(plan, profile.data, pool=pool)


def main_sweep(args) -> int:
    from cluster.sweep import render_sweep_text

    if args.emit_sbatch is not None:
        raise ConfigError("--emit-sbatch with --sweep: write one point at a time (--set instead of --sweep).")
    sweep, built = make_sweep(args, strict_paths=not args.dry_run)
    if args.dry_run:
        print(json.dumps(sweep.to_dict(), indent=2) if args.json else render_sweep_text(sweep, render_plan_text))
        return 0
    check_before_submit(sweep.shared, built[0][0])
    for (profile, _full), point in zip(built, sweep.points):
        check_before_submit(point.plan, profile)
    from cluster.sweep import submit_sweep  # imports submitit (through cluster.slurm) only now

    record = submit_sweep(sweep, built[0][0].data, [profile.data for profile, _plan in built])
    print(json.dumps(record, indent=2) if args.json else record["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
