"""What `cluster.status` adds for the eval stage and for sweeps: the eval scores of a chain (read
from the `eval.json` its eval stage writes), the latest rollout metrics of a train job (the tail of
its Ray driver log, cheap), and one row per point of a sweep (`<log_dir>/<sweep-id>/sweep.json`).
Pure readers of files; Slurm states come in through the `chain_status` the caller passes."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Callable

from cluster.eval_stage import eval_scores, read_eval, render_scores

SWEEP_FILE = "sweep.json"
TAIL_BYTES = 64 << 10
# slime: `rollout 12: {'rollout/raw_reward': ...}`; the holdem plug-in: `holdem rollout 12: {...}`
_METRICS = re.compile(r"(?:^|[\s:])(holdem )?rollout (\d+): (\{.*\})\s*$")
_REWARD_KEYS = ("rollout/raw_reward", "holdem/reward/score")


def add_eval_scores(record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """rows[i]["eval"] for the eval stage: both models' scores and the delta (None before it ran)."""
    for row, stage in zip(rows, record.get("stages", [])):
        if stage.get("name") == "eval":
            row["eval"] = eval_scores(read_eval(stage.get("output")))


def eval_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [f"  eval {r['eval']['checkpoint']}: {render_scores(r['eval'])}" for r in rows if r.get("eval")]


def _tail(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def latest_metrics(log_dir: str | None) -> dict[str, Any] | None:
    """The last rollout line of the train job's newest driver log: {"rollout", "reward"} or None."""
    if not log_dir:
        return None
    def restart(path: Path) -> int:
        number = path.parent.name.removeprefix("restart-")
        return int(number) if number.isdigit() else -1

    logs = sorted(Path(log_dir).glob("restart-*/driver.log"), key=restart)
    for path in reversed(logs):
        for line in reversed(_tail(path)):
            m = _METRICS.search(line)
            if not m:
                continue
            try:
                values = ast.literal_eval(m.group(3))
            except (ValueError, SyntaxError):
                continue
            if isinstance(values, dict):
                reward = next((values[k] for k in _REWARD_KEYS if isinstance(values.get(k), (int, float))), None)
                return {"rollout": int(m.group(2)), "reward": reward}
    return None


def read_sweep(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sweep_status(sweep_dir: Path, chain_status: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The shared stages' status and one entry per point: state, its own stages, latest metrics, eval."""
    record = read_sweep(sweep_dir) or {}
    shared = chain_status(Path(sweep_dir))
    points = []
    for point in record.get("points", []):
        chain_dir = Path(point["chain_dir"])
        status = chain_status(chain_dir) if (chain_dir / "chain.json").is_file() else {"state": "NOT SUBMITTED", "stages": []}
        own = {r["stage"]: r for r in status["stages"]}
        train = own.get("train") or {}
        points.append({
            "index": point["index"], "name": point["name"], "overrides": point.get("overrides", {}),
            "chain_id": point.get("chain_id"), "save": point.get("save"), "state": status["state"],
            "train_job": train.get("job_id", "-"), "eval_job": (own.get("eval") or {}).get("job_id", "-"),
            "latest": latest_metrics(train.get("log_dir")), "eval": (own.get("eval") or {}).get("eval"),
            "stages": status["stages"],
        })
    return {"sweep_id": record.get("sweep_id"), "profile": record.get("profile"), "sweep_dir": str(sweep_dir),
            "keys": record.get("keys", []), "submit_failed": record.get("submit_failed"),
            "shared": shared["stages"], "points": points}


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _delta(value: Any) -> str:
    return f"{100 * value:+.1f}" if isinstance(value, (int, float)) else "-"


def render_sweep(status: dict[str, Any]) -> str:
    shared = " ".join(f"{r['stage']} {r['state']}" + (f" ({r['job_id']})" if r["job_id"] != "-" else "")
                      for r in status["shared"]) or "(none)"
    lines = [f"sweep {status['sweep_id']} ({status['profile']}): {len(status['points'])} point(s) over "
             f"{', '.join(status['keys'])}", f"shared stages: {shared}"]
    if status.get("submit_failed"):
        lines.append(f"submission failed: {status['submit_failed']}")
    header = ("POINT", "OVERRIDES", "STATE", "TRAIN", "EVAL", "ROLLOUT", "REWARD", "EXACT", "BASE", "DELTA",
              "STRICT", "BASE", "DELTA")
    cells = []
    for p in status["points"]:
        latest, scores = p.get("latest") or {}, p.get("eval") or {}
        exact, strict = scores.get("exact_match") or {}, scores.get("strict_accuracy") or {}
        cells.append((f"p{p['index']}", " ".join(f"{k}={v}" for k, v in p["overrides"].items()), p["state"],
                      str(p["train_job"]), str(p["eval_job"]),
                      str(latest["rollout"]) if latest.get("rollout") is not None else "-",
                      f"{latest['reward']:+.3f}" if isinstance(latest.get("reward"), (int, float)) else "-",
                      _pct(exact.get("trained")), _pct(exact.get("base")), _delta(exact.get("delta")),
                      _pct(strict.get("trained")), _pct(strict.get("base")), _delta(strict.get("delta"))))
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    lines += [fmt.format(*header).rstrip()] + [fmt.format(*c).rstrip() for c in cells]
    lines.append("per point: python -m cluster.status <chain id> (" + ", ".join(p["chain_id"] or "?" for p in status["points"][:3])
                 + (", ..." if len(status["points"]) > 3 else "") + ")")
    return "\n".join(lines)
