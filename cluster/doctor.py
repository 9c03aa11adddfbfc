"""`python -m cluster.doctor`: is this node ready to run a profile's training? One finding per line,
each with its fix; exit 0 when nothing blocks, 2 when a finding does.

    python -m cluster.doctor --profile P [--set KEY=VALUE ...] [--nodes N] [--gpus-per-node G] [--json]

This module turns a profile into the checks' input (`render_doctor_spec`, also used by the plan for
the launcher's per-node preflight); the checks themselves are in cluster/launcher/preflight.py. The
Python checks ask the train stage's own interpreter with the PYTHONPATH the plan renders for it
(cluster/stages/env.py), so `import slime` is answered the way the stage will do it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from cluster.errors import ConfigError
from cluster.launcher.preflight import DEFAULT_MIN_FREE_GB, DoctorSpec, Finding, Probe, blocking, run_doctor
from cluster.profile.schema import SLIME_SECTIONS
from cluster.stages.env import stage_pythonpath


def profile_flag(profile, name: str, default: Any = None) -> Any:
    """A slime/Megatron flag's value wherever the profile sets it (slime-facing sections)."""
    for section in SLIME_SECTIONS:
        body = profile.section(section)
        if name in body and body[name] is not None:
            return body[name]
    return default


def render_doctor_spec(profile, min_free_gb: float = DEFAULT_MIN_FREE_GB) -> DoctorSpec:
    """Profile -> DoctorSpec (pure): the train stage's inputs, interpreter and PYTHONPATH."""
    keys = ("paths.hf-checkpoint", "paths.ref-load", "paths.prompt-data", "paths.load")
    inputs = {k: profile.get(k) for k in keys if profile.get(k)}
    entry = profile.get("stages.train.entrypoint") or ["python3"]
    python = str(entry[0]).replace("{python}", sys.executable)
    return DoctorSpec(profile.get("slurm.gpus_per_node") or 0, profile.get("paths.slime_dir"),
                      profile.get("paths.megatron_dir"), inputs, profile.get("paths.save"),
                      min_free_gb=min_free_gb, python=python, pythonpath=tuple(stage_pythonpath(profile, "train")),
                      slime_installed=bool(profile.get("container.slime_installed")),
                      transformer_impl=str(profile_flag(profile, "transformer-impl", "transformer_engine")),
                      attention_backend=profile_flag(profile, "attention-backend"))


def container_finding(profile) -> Finding | None:
    """The stages run in an image: what this host's Python has says nothing about it."""
    container = profile.section("container")
    runtime = container.get("runtime") or "none"
    if runtime == "none":
        return None
    run = (f"srun --container-image={container.get('image')} python3 -m cluster.doctor --profile {profile.name}"
           if runtime == "pyxis" else
           f"apptainer exec --nv {container.get('image')} python3 -m cluster.doctor --profile {profile.name}")
    return Finding("container", False, f"the profile runs the stages in {runtime} image {container.get('image')}, "
                   f"but these checks asked this host's Python; for the image's answer run the doctor inside it "
                   f"(e.g. {run}); the launcher's preflight does that on every node", blocking=False)


def main(argv: Sequence[str] | None = None, probe: Probe | None = None) -> int:
    from cluster.profile.checks import scale_topology
    from cluster.cli import ArgumentParser
    from cluster.profile import load_profile

    parser = ArgumentParser(prog="python -m cluster.doctor",
                            description="Check that this node can run the profile's training: one line per finding, with the fix.")
    parser.add_argument("--profile", default=os.environ.get("RUN_PROFILE"), help="profile name or path (default: $RUN_PROFILE)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("--min-free-gb", type=float, default=DEFAULT_MIN_FREE_GB,
                        help=f"free disk wanted at paths.save (default {DEFAULT_MIN_FREE_GB:g})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (findings with check, ok, blocking, message; the spec checked)")
    args = parser.parse_args(argv)
    if not args.profile:
        raise ConfigError("no profile: pass --profile NAME or set RUN_PROFILE.")
    profile = scale_topology(load_profile(args.profile, sets=args.sets), args.nodes, args.gpus_per_node)
    spec = render_doctor_spec(profile, args.min_free_gb)
    findings = run_doctor(spec, probe=probe)
    extra = container_finding(profile)
    findings += [extra] if extra else []
    bad = blocking(findings)
    if args.json:
        print(json.dumps({
            "profile": profile.name, "ok": not bad, "blocking": len(bad),
            "findings": [{"check": f.check, "ok": f.ok, "blocking": f.blocking, "severity": f.line().split(":")[0],
                          "message": f.message} for f in findings],
            "spec": spec.to_dict()}, indent=2))
        return 2 if bad else 0
    for finding in findings:
        (sys.stdout if finding.ok else sys.stderr).write(finding.line() + "\n")
    print(summary(findings))
    return 2 if bad else 0


def summary(findings: Sequence[Finding]) -> str:
    ok, bad = sum(f.ok for f in findings), len(blocking(findings))
    warnings = len(findings) - ok - bad
    if bad:
        return f"{ok} ok, {warnings} warning(s), {bad} blocking"
    return f"all {len(findings)} checks passed" + (f" ({warnings} warning(s))" if warnings else "")


if __name__ == "__main__":
    from cluster.cli import run_cli

    sys.exit(run_cli(main))
