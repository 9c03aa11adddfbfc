"""`python -m cluster.doctor`: is this node ready to run a profile's training? One finding per line,
each with its fix; exit 0 when nothing blocks, 2 when a finding does.

    python -m cluster.doctor --profile P [--set KEY=VALUE ...] [--nodes N] [--gpus-per-node G]

This module turns a profile into the checks' input (`render_doctor_spec`, also used by the plan for
the launcher's per-node preflight); the checks themselves are in cluster/launcher/preflight.py.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from cluster.errors import ConfigError
from cluster.launcher.preflight import DEFAULT_MIN_FREE_GB, DoctorSpec, Probe, blocking, run_doctor


def render_doctor_spec(profile, min_free_gb: float = DEFAULT_MIN_FREE_GB) -> DoctorSpec:
    """Profile -> DoctorSpec (pure)."""
    keys = ("paths.hf-checkpoint", "paths.ref-load", "paths.prompt-data", "paths.load")
    inputs = {k: profile.get(k) for k in keys if profile.get(k)}
    return DoctorSpec(profile.get("slurm.gpus_per_node") or 0, profile.get("paths.slime_dir"),
                      profile.get("paths.megatron_dir"), inputs, profile.get("paths.save"),
                      min_free_gb=min_free_gb)


def main(argv: Sequence[str] | None = None, probe: Probe | None = None) -> int:
    from cluster.checks import scale_topology
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
    args = parser.parse_args(argv)
    if not args.profile:
        raise ConfigError("no profile: pass --profile NAME or set RUN_PROFILE.")
    profile = scale_topology(load_profile(args.profile, sets=args.sets), args.nodes, args.gpus_per_node)
    findings = run_doctor(render_doctor_spec(profile, args.min_free_gb), probe=probe)
    for finding in findings:
        (sys.stdout if finding.ok else sys.stderr).write(finding.line() + "\n")
    bad = blocking(findings)
    print(f"{len(findings) - len(bad)} ok, {len(bad)} blocking" if bad else f"all {len(findings)} checks passed")
    return 2 if bad else 0


if __name__ == "__main__":
    from cluster.cli import run_cli

    sys.exit(run_cli(main))
