"""Plan stages -> the sbatch scripts a chain uses (pure), `emit_sbatch` to write them, and the
entry the hand-submitted wrappers in scripts/sbatch/ call inside their allocation:

    python -m cluster.sbatch_render job-script --stage train --profile full [--set K=V ...]

prints the path of the job script rendered for the *current* allocation (nothing when the stage's
output is already complete); the wrapper then `exec`s it, so a hand-submitted job runs exactly the
script `--emit-sbatch` would write.

Slurm does not create missing directories for `--output`, so the batch file goes to
`<chain_dir>/<stage>/slurm-%j.out` (that dir exists before submission) and the script sends
everything else to `<chain_dir>/<stage>/<job id>/restart-<n>/`.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from cluster.stages.container import ContainerSpec, render_env_lines
from cluster.errors import ConfigError
from cluster.outputs import write_atomic, write_json_atomic
from cluster.plan import PROJECT_ROOT, Plan, StagePlan
from cluster.secrets import is_secret_name

WARNING_SIGNAL = "USR1"  # sent to the batch shell only (B:), which traps it and requeues
NOT_SBATCH = ("dependency",)  # refers to other jobs' ids: submit-chain.sh passes it on the command line


def render_sbatch_options(stage: StagePlan, chain_dir: str) -> list[str]:
    """`#SBATCH` lines: the plan's options under their own names (booleans bare), plus the log
    files, append mode (a requeued run must not truncate them) and the warning signal."""
    opts: dict[str, Any] = {k: v for k, v in stage.slurm.items() if k not in NOT_SBATCH}
    if opts.get("requeue") or stage.max_restarts:
        opts["requeue"] = True
        opts["signal"] = f"B:{WARNING_SIGNAL}@{_grace_s(opts.get('signal'))}"
    opts["open-mode"] = "append"
    opts["output"] = f"{chain_dir}/{stage.name}/slurm-%j.out"
    opts["error"] = f"{chain_dir}/{stage.name}/slurm-%j.out"
    lines = []
    for key, value in opts.items():
        if value is None or value is False:
            continue
        text = f"--{key}" if value is True else f"--{key}={value}"
        if "\n" in text or " " in text:
            raise ConfigError(f"stage {stage.name}: sbatch option {text!r} contains a space or newline, "
                              "which an #SBATCH line cannot carry; fix the profile value.")
        lines.append(f"#SBATCH {text}")
    return lines


def _grace_s(signal: Any) -> int:
    """Seconds before the end from the plan's `--signal` (`USR2@120`, `B:USR1@90`); default 120."""
    text = str(signal or "")
    try:
        return int(text.rpartition("@")[2]) if "@" in text else 120
    except ValueError:
        raise ConfigError(f"sbatch --signal={text}: expected [B:]SIG@SECONDS, e.g. USR1@120.") from None


def _step_argv(stage: StagePlan) -> list[str]:
    return ["srun", *(["--ntasks-per-node=1"] if stage.name == "train" else []), *stage.srun, *stage.step]


def _env_lines(stage: StagePlan, container: ContainerSpec) -> list[str]:
    lines = ['export PYTHONPATH=' + shlex.quote(str(PROJECT_ROOT)) + '"${PYTHONPATH:+:$PYTHONPATH}"',
             "export PYTHONUNBUFFERED=1"]
    for key, value in stage.env.items():
        if not key.isidentifier() or not key.isascii():
            raise ConfigError(f"stage {stage.name}: env {key!r} is not a valid environment variable name.")
        if is_secret_name(key):
            raise ConfigError(f"stage {stage.name}: env {key} looks like a secret and would be written into "
                              f"the job script; export {key} in the environment you submit from instead.")
        if key == "PYTHONPATH":
            lines.append(f'export PYTHONPATH={shlex.quote(value)}":$PYTHONPATH"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return lines + render_env_lines(container)


def render_sbatch_script(stage: StagePlan, plan: Plan) -> str:
    """The exact batch script of one stage. The step runs in the background and the shell
    `wait`s, so the warning signal's trap runs at once (LOCAL_SLURM.md); a requeueable stage's
    trap calls `scontrol requeue` until `max_restarts` runs have been used."""
    chain_dir, container = plan.chain_dir, plan.container_spec()
    log_root = f"{chain_dir}/{stage.name}"
    step = _step_argv(stage)
    requeue = bool(stage.slurm.get("requeue") or stage.max_restarts)
    lines = [
        "#!/bin/bash",
        f"# holdem-cluster stage {stage.name} of chain {Path(chain_dir).name}; rendered by cluster.sbatch_render",
        "# from the profile: change the profile and render again rather than editing this file.",
        *render_sbatch_options(stage, chain_dir),
        "set -euo pipefail",
        "",
        'if [ -z "${SLURM_JOB_ID:-}" ]; then',
        '  echo "error: this is a Slurm batch script; submit it with sbatch" >&2; exit 2',
        "fi",
        'restart="${SLURM_RESTART_COUNT:-0}"',
        f'log_dir={shlex.quote(log_root)}/"$SLURM_JOB_ID/restart-$restart"',
        'mkdir -p "$log_dir"',
        f'echo "holdem {stage.name}: job $SLURM_JOB_ID restart $restart on $(hostname -s); logs in $log_dir/"',
        'exec >>"$log_dir/batch.out" 2>&1',
        "",
        *_env_lines(stage, container),
        "",
        *(_requeue_lines(stage.max_restarts) if requeue else []),
        'srun_log=(--output="$log_dir/task-%t-%N.out")  # stderr too: one file per task',
        f'echo "$(date +%FT%T) step: {_echo_safe(shlex.join(step))}"',
        f'{shlex.join(step[:1])} "${{srun_log[@]}}" {shlex.join(step[1:])} &',
        "step_pid=$!",
        "# `wait` returns early (128+signal) when a trapped signal arrives: wait again for the step's own code",
        "while :; do",
        "  trapped=0",
        '  wait "$step_pid" && rc=0 || rc=$?',
        '  [ "$trapped" = 1 ] || break',
        "done",
        'echo "$(date +%FT%T) step ended with exit code $rc"',
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def _echo_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")


def _requeue_lines(max_restarts: int) -> list[str]:
    return [
        f"max_restarts={int(max_restarts)}",
        "# shellcheck disable=SC2317  # runs from the trap below",
        "on_warning() {",
        "  trapped=1",
        '  echo "$(date +%FT%T) warning signal: job $SLURM_JOB_ID nears its end (restart $restart of $max_restarts)"',
        '  if [ "$restart" -ge "$max_restarts" ]; then',
        '    echo "not requeueing: slurm.max_restarts=$max_restarts runs used; the job ends here"',
        "    return 0",
        "  fi",
        "  # Slurm then stops the step (SIGTERM, KillWait, SIGKILL) and restarts the job under the",
        "  # same id, so dependents keep waiting on it; the launcher resumes from the save dir.",
        '  scontrol requeue "$SLURM_JOB_ID" || echo "error: scontrol requeue $SLURM_JOB_ID failed; the job ends at its time limit"',
        "}",
        f"trap on_warning {WARNING_SIGNAL}",
    ]


def render_submit_chain(plan: Plan, scripts: Mapping[str, Path]) -> str:
    """A shell script submitting the emitted scripts in order with `afterok` on real job ids;
    if sbatch refuses one, the jobs already submitted are cancelled."""
    lines = ["#!/bin/bash", f"# Submit chain {plan.chain_id}: every stage afterok on the stages it reads.",
             "set -euo pipefail", "submitted=()",
             "cancel_submitted() { if [ ${#submitted[@]} -gt 0 ]; then scancel \"${submitted[@]}\"; fi; }",
             "trap 'echo \"error: sbatch failed; cancelled ${submitted[*]:-nothing}\" >&2; cancel_submitted' ERR",
             f"mkdir -p {' '.join(shlex.quote(f'{plan.chain_dir}/{n}') for n in scripts)}"]
    for stage in plan.stages:
        if stage.name not in scripts:
            continue
        dep = stage.slurm.get("dependency")
        dep_opt = f' --dependency="{dep}" --kill-on-invalid-dep=yes' if dep else ""
        lines.append(f"{stage.name}_id=$(sbatch --parsable{dep_opt} {shlex.quote(str(scripts[stage.name]))})")
        lines.append(f'{stage.name}_id="${{{stage.name}_id%%;*}}"; submitted+=("${stage.name}_id")')
    summary = " ".join(f"{n}=${{{n}_id}}" for n in scripts)
    lines.append(f'echo "chain {plan.chain_id} submitted: {summary}; logs in {_echo_safe(plan.chain_dir)}/"')
    return "\n".join(lines) + "\n"


def emit_sbatch(plan: Plan, out_dir: str | Path) -> list[Path]:
    """Write `<stage>.sbatch` for every stage that runs and `submit-chain.sh`, and the train stage's
    `launch.json` where its step reads it (the chain's log dir, as a submission does). Creates each
    stage's log dir so a script submitted by hand finds its `--output` directory. Returns the files
    written."""
    out = Path(out_dir).resolve()
    scripts: dict[str, Path] = {}
    written: list[Path] = []
    texts = {}
    for stage in plan.stages:
        if stage.skip:
            continue
        texts[stage.name] = render_sbatch_script(stage, plan)  # all or nothing
    for stage in plan.stages:
        if stage.name not in texts:
            continue
        if stage.launch is not None:
            written.append(write_json_atomic(Path(plan.chain_dir, stage.name, "launch.json"), stage.launch.to_dict()))
        path = scripts[stage.name] = write_atomic(out / f"{stage.name}.sbatch", texts[stage.name])
        path.chmod(0o755)
        written.append(path)
        Path(plan.chain_dir, stage.name).mkdir(parents=True, exist_ok=True)
    if scripts:
        chain = write_atomic(out / "submit-chain.sh", render_submit_chain(plan, scripts))
        chain.chmod(0o755)
        written.append(chain)
    return written


# --- inside an allocation: the hand-submitted wrappers' entry ---------------------------------

def pick_chain_id(log_dir: Path, base: str, restart: int) -> str:
    """A hand-submitted job's chain id from its job id. Job ids start again at 1 when a cluster's
    state is wiped, so a first run never reuses an old dir (`base.2`, ...); a restart takes the
    newest, which its own first run created."""
    taken = [base] if (log_dir / base).exists() else []
    n = 2
    while (log_dir / f"{base}.{n}").exists():
        taken.append(f"{base}.{n}")
        n += 1
    if restart > 0 and taken:
        return taken[-1]
    return base if not taken else f"{base}.{n}"


def allocation(env: Mapping[str, str]) -> tuple[str, int, int | None, int]:
    """(job id, nodes, GPUs per node or None, restart) of the current Slurm job."""
    if not env.get("SLURM_JOB_ID"):
        raise ConfigError("not inside a Slurm job (SLURM_JOB_ID unset): this entry is for the scripts in "
                          "scripts/sbatch/; submit one with sbatch, or use python -m cluster.submit.")
    try:
        nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
        gpus = env.get("SLURM_GPUS_ON_NODE") or env.get("SLURM_GPUS_PER_NODE")
        gpus_per_node = int(gpus.rpartition(":")[2]) if gpus else None
        restart = int(env.get("SLURM_RESTART_COUNT") or 0)
    except ValueError as exc:
        raise ConfigError(f"malformed Slurm environment: {exc}.") from None
    return env["SLURM_JOB_ID"], nodes, gpus_per_node, restart


def render_job_script(stage_name: str, profile_name: str, sets: Sequence[str],
                      env: Mapping[str, str]) -> Path | None:
    """Render `stage_name` of `profile_name` for the current allocation into its log dir (and the
    train stage's launch.json); None when the stage's output is already complete."""
    from cluster.profile.checks import run_checks, scale_topology
    from cluster.plan import build_plan
    from cluster.profile import load_profile

    job_id, nodes, gpus, restart = allocation(env)
    profile = load_profile(profile_name, sets=sets, env=env)
    if stage_name == "train":
        profile = scale_topology(profile, nodes, gpus, env)
        run_checks(profile)
    log_dir = Path(profile.get("paths.log_dir"))
    chain_id = pick_chain_id(log_dir, f"{profile.name}-sbatch-{job_id}", restart)
    plan = build_plan(profile, (stage_name,), chain_id=chain_id, strict_paths=True)
    stage = plan.stage(stage_name)
    if stage.skip:
        sys.stderr.write(f"holdem {stage_name}: {stage.reason}; nothing to run\n")
        return None
    run_dir = Path(plan.chain_dir, stage_name, job_id, f"restart-{restart}")
    if stage.launch is not None:
        write_json_atomic(Path(plan.chain_dir, stage_name, "launch.json"), stage.launch.to_dict())
    text = render_sbatch_script(stage, plan)
    return write_atomic(run_dir / "job.sh", text)


def render_local_spec(profile_name: str, sets: Sequence[str], nodes: int, env: Mapping[str, str]) -> Path:
    """The train stage's launch.json for `nodes` node(s) outside Slurm (the seed's shell entry);
    checks the profile exactly as `cluster.submit` does; returns the file written."""
    from cluster.profile.checks import run_checks, scale_topology
    from cluster.plan import build_plan, new_chain_id
    from cluster.profile import load_profile

    profile = scale_topology(load_profile(profile_name, sets=sets, env=env), nodes, None, env)
    run_checks(profile)
    plan = build_plan(profile, ("train",), chain_id=new_chain_id(profile.name) + "-local", strict_paths=True)
    return write_json_atomic(Path(plan.chain_dir, "train", "launch.json"), plan.stage("train").launch.to_dict())


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli import ArgumentParser
    from cluster.profile.schema import STAGE_NAMES

    parser = ArgumentParser(prog="python -m cluster.sbatch_render",
                            description="Render a stage's job script for the current Slurm allocation "
                                        "(used by scripts/sbatch/*.sbatch); prints its path.")
    sub = parser.add_subparsers(dest="command", required=True)
    job = sub.add_parser("job-script", help="render one stage for this allocation and print the script's path")
    job.add_argument("--stage", required=True, choices=STAGE_NAMES)
    job.add_argument("--profile", default=os.environ.get("RUN_PROFILE"), help="profile name or path (default: $RUN_PROFILE)")
    job.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    local = sub.add_parser("launch-spec", help="write the train launch.json for a run outside Slurm; print its path")
    local.add_argument("--profile", default=os.environ.get("RUN_PROFILE"), help="profile name or path (default: $RUN_PROFILE)")
    local.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    local.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.profile:
        raise ConfigError("no profile: pass --profile NAME (e.g. sbatch scripts/sbatch/train.sbatch --profile full) "
                          "or export RUN_PROFILE.")
    if args.command == "launch-spec":
        print(render_local_spec(args.profile, args.sets, args.nodes, os.environ))
        return 0
    path = render_job_script(args.stage, args.profile, args.sets, os.environ)
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    from cluster.cli import run_cli

    sys.exit(run_cli(main))
