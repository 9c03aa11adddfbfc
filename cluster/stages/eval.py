"""The `eval` stage on the submit side: its step (`python -m cluster.launcher.evaluate ...`) rendered
from the profile's `stages.eval` section, whether its output (`<paths.save>/eval.json` for the
newest complete checkpoint) is already there, and reading that file back for `cluster.status`.

What the step does inside its allocation is cluster/launcher/evaluate.py.
"""
from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from cluster.errors import ConfigError
from cluster.outputs import newest_complete_checkpoint
from cluster.profile import Profile
from cluster.stages.env import offline_env

EVAL_FILE = "eval.json"
BASE_SCORES_DIR = "eval-base"  # under a sweep's shared chain dir: the starting model's score, for every point
MODES = ("tools", "plain")
# Placeholders the evaluator fills in on the node (never profile references: they have no dot).
EXPORT_FIELDS = ("{checkpoint}", "{output}")
SERVER_FIELDS = ("{model}", "{host}", "{port}")


def eval_file(profile: Profile) -> str | None:
    save = profile.get("paths.save")
    return str(Path(save) / EVAL_FILE) if save else None


def read_eval(path: str | Path | None) -> dict[str, Any] | None:
    """An eval.json as the evaluator wrote it, or None (missing, unreadable, not an object)."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def eval_output_status(profile: Profile) -> tuple[bool, str]:
    """(complete, why): eval.json exists and scored the newest complete checkpoint of paths.save."""
    save = profile.get("paths.save")
    if not save:
        return False, "paths.save is not set"
    ckpt, why = newest_complete_checkpoint(save)
    if ckpt is None:
        return False, f"no complete checkpoint to score ({why})"
    done = read_eval(Path(save) / EVAL_FILE)
    if done and done.get("checkpoint") == str(ckpt):
        return True, f"{Path(save) / EVAL_FILE} already scores {ckpt.name}"
    return False, f"{Path(save) / EVAL_FILE} does not score {ckpt.name} yet"


def checkpoint_problem(profile: Profile) -> str | None:
    """Why `--stages eval` without train has nothing to score, or None."""
    save = profile.get("paths.save")
    ckpt, why = newest_complete_checkpoint(save) if save else (None, "paths.save is not set")
    if ckpt is None:
        return (f"stage eval scores the newest checkpoint in paths.save = {save}, which has none ({why}) and no "
                f"stage of this chain trains it; add stage train to --stages or fix paths.save")
    return None


_PLAIN_WORD = re.compile(r"[\w@%+=:,./{}-]+")


def join_words(words: list[str]) -> str:
    """A command as one shell-quoted string that keeps `{placeholders}` readable (shlex.split reads it)."""
    return " ".join(w if _PLAIN_WORD.fullmatch(w) else shlex.quote(w) for w in words)


def _words(profile: Profile, key: str, needs: tuple[str, ...]) -> list[str]:
    words = profile.get(f"stages.eval.{key}")
    if not words:
        raise ConfigError(f"{profile.where(f'stages.eval.{key}')}: stages.eval.{key} is not set; the eval stage needs "
                          f"the {'export' if key == 'export' else 'SGLang server'} command (see profiles/base.yaml).")
    out = [str(w).replace("{python}", sys.executable) for w in words]
    missing = [field for field in needs if not any(field in w for w in out)]
    if missing:
        raise ConfigError(f"{profile.where(f'stages.eval.{key}')}: stages.eval.{key} never uses {', '.join(missing)}; "
                          f"the evaluator fills in {', '.join(needs)} on the node.")
    return out


def render_eval_argv(profile: Profile, chain_dir: str) -> list[str]:
    """The eval step: the evaluator with the export and server commands as shell-quoted strings."""
    spec = profile.get("stages.eval") or {}
    mode = spec.get("mode") or "tools"
    if mode not in MODES:
        raise ConfigError(f"{profile.where('stages.eval.mode')}: stages.eval.mode = {mode!r}: must be one of "
                          f"{', '.join(MODES)}.")
    if not spec.get("source"):
        raise ConfigError(f"{profile.where('stages.eval.source')}: stages.eval.source is not set; give the PokerBench "
                          "test data (a hub name such as RZ412/PokerBench, or a JSONL file).")
    argv = [sys.executable, "-m", "cluster.launcher.evaluate",
            "--save", str(profile.get("paths.save")), "--base-model", str(profile.get("paths.hf-checkpoint")),
            "--data", str(spec["source"]), "--split", str(spec.get("split") or "test"), "--mode", mode,
            "--log-dir", f"{chain_dir}/eval",
            "--export", join_words(_words(profile, "export", EXPORT_FIELDS)),
            "--server", join_words(_words(profile, "server", SERVER_FIELDS))]
    for key, flag in (("limit", "--limit"), ("server_timeout_s", "--server-timeout-s"),
                      ("port_base", "--port-base"), ("tmp_root", "--tmp-root")):
        if spec.get(key) is not None:
            argv += [flag, str(spec[key])]
    return argv


def with_shared_base_scores(argv: Sequence[str], shared_dir: str) -> list[str]:
    """The eval step of one sweep point: every point's evaluator keeps and finds the starting model's
    score in `<shared_dir>/eval-base/` (the sweep's shared chain dir), so it is scored once, not once
    per point (cluster/launcher/evaluate.py, --base-scores)."""
    return [*argv, "--base-scores", f"{shared_dir}/{BASE_SCORES_DIR}"]


def eval_env(profile: Profile, project_root: Path) -> dict[str, str]:
    """The export tool imports slime and Megatron; the evaluator and holdem.eval are this project.
    On offline compute nodes (slurm.compute_offline) HF_HUB_OFFLINE=1, as for convert and train: the
    export, the server and the scorer load the local checkpoints instead of timing out on the hub."""
    parts = [profile.get("paths.megatron_dir"), profile.get("paths.slime_dir"), str(project_root)]
    return {"PYTHONPATH": ":".join(dict.fromkeys(p for p in parts if p)), **offline_env(profile)}


def eval_scores(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The two headline scores of an eval.json for both models and their delta (None when absent)."""
    if not record or not isinstance(record.get("trained"), dict) or not isinstance(record.get("base"), dict):
        return None
    out: dict[str, Any] = {"checkpoint": Path(str(record.get("checkpoint") or "")).name, "rows": record.get("rows")}
    for metric in ("exact_match", "strict_accuracy"):
        trained, base = record["trained"].get(metric), record["base"].get(metric)
        out[metric] = {"trained": trained, "base": base,
                       "delta": trained - base if isinstance(trained, (int, float)) and isinstance(base, (int, float)) else None}
    return out


def render_scores(scores: dict[str, Any] | None) -> str:
    """`exact-match 41.7% (base 37.5%, +4.2)  strict 33.3% (base 29.2%, +4.2)`, or '' when not scored."""
    if not scores:
        return ""

    def pct(value: Any) -> str:
        return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"

    parts = []
    for metric, name in (("exact_match", "exact-match"), ("strict_accuracy", "strict")):
        m = scores[metric]
        delta = f", {100 * m['delta']:+.1f}" if m["delta"] is not None else ""
        parts.append(f"{name} {pct(m['trained'])} (base {pct(m['base'])}{delta})")
    return "  ".join(parts)
