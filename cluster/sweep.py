"""Sweeps: one profile, N override sets ("points"), the upstream stages (data, model, convert)
submitted once and one train (+ eval) chain per point.

    python -m cluster.submit --profile full --nodes 1 --sweep lr=1e-6,5e-7 --sweep eps-clip-high=0.28,0.3
    python -m cluster.submit --profile full --nodes 1 --sweep-file points.yaml   # a list of {KEY: VALUE}

`--sweep KEY=V1,V2,...` takes KEY as `--set` does (a dotted path or a bare slime flag name) and
values as YAML (commas inside [...] or quotes do not split); several `--sweep`s make a grid. Each
point is the profile with the point's overrides applied after every `--set`, checked like a
single chain (a point that fails the checks stops the whole sweep before anything is submitted),
with its own `paths.save` (`<paths.save>/sweep-<point name>`, so a point resubmitted later resumes
its own checkpoints and nobody else's), its own chain id and record (requeue, resume and the W&B
run id are per chain), and its own row in `cluster.status <sweep>`.

On disk: `<log_dir>/<sweep-id>/sweep.json` (the points and their chains) next to the shared
stages' `chain.json`, and `eval-base/`, where the points' eval stages keep the starting model's
score so that it is scored once for the whole sweep (cluster/launcher/evaluate.py --base-scores);
each point's chain is `<log_dir>/<sweep-id>-p<i>/` like any other chain.
The end of this module reads those files back for `cluster.status`: one row per point, the latest
rollout metrics of each train job (its driver log's tail, parsed as cluster.metrics does) and the
eval stage's scores.
"""
from __future__ import annotations

import itertools
import json
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from cluster.errors import ConfigError, SlurmError
from cluster.plan import Plan, StagePlan, new_chain_id
from cluster.profile import Profile, parse_yaml, read_profile_text
from cluster.metrics import parse_line
from cluster.stages.eval import eval_scores, read_eval, render_scores, with_shared_base_scores

MAX_POINTS = 32  # a sweep is a handful of runs, each a multi-GPU job; more is almost surely a typo
SWEEP_FILE = "sweep.json"
SHARED_STAGES = ("data", "model", "convert")
POINT_STAGES = ("train", "eval")
_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PointSpec:
    """One point before it is checked: its overrides as (KEY, value text) in the order given."""

    index: int
    overrides: tuple[tuple[str, str], ...]

    @property
    def sets(self) -> list[str]:
        return [f"{key}={text}" for key, text in self.overrides]

    @property
    def label(self) -> str:
        return " ".join(f"{key}={text}" for key, text in self.overrides)

    @property
    def name(self) -> str:
        """Readable, path-safe and stable: the same overrides give the same save dir next time."""
        parts = [f"{key.rpartition('.')[2]}-{_SLUG_BAD.sub('-', text).strip('-') or 'null'}" for key, text in self.overrides]
        return "_".join(parts)[:120]


@dataclass(frozen=True)
class SweepPoint:
    spec: PointSpec
    plan: Plan  # this point's own stages (train, eval); dependencies name the shared stages' job ids
    save: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.spec.index, "name": self.spec.name, "overrides": dict(self.spec.overrides),
                "save": self.save, "chain_id": self.plan.chain_id, "chain_dir": self.plan.chain_dir,
                "stages": [s.to_dict() for s in self.plan.stages], "warnings": list(self.plan.warnings)}


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    shared: Plan  # the upstream stages, once; chain id = the sweep id
    points: tuple[SweepPoint, ...]
    keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sweep_dir(self) -> str:
        return self.shared.chain_dir

    def to_dict(self) -> dict[str, Any]:
        """The dry-run: the single-chain shape for the shared stages (`stages`), plus every point."""
        return {**self.shared.to_dict(), "sweep_id": self.sweep_id, "sweep_keys": list(self.keys),
                "points": [p.to_dict() for p in self.points]}


# --- parsing ----------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """`1e-6,5e-7` -> ['1e-6', '5e-7']; commas inside [...], {...} or quotes do not split."""
    out, buf, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    out.append("".join(buf).strip())
    return out


def parse_sweep_args(items: list[str]) -> list[tuple[str, list[str]]]:
    """`--sweep KEY=V1,V2` items -> [(KEY, [V1, V2])], checked for shape only."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--sweep {item!r}: expected KEY=V1,V2,..., e.g. --sweep lr=1e-6,5e-7.")
        values = split_values(raw)
        if not raw.strip() or any(not v for v in values):
            raise ConfigError(f"--sweep {key}: {'an empty value list' if not raw.strip() else 'an empty value in ' + repr(raw)}; "
                              f"give one or more comma-separated values, e.g. --sweep {key}=1,2.")
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"--sweep {key}: the value {dupes[0]} is given twice; each point must differ.")
        if key in (k for k, _ in axes):
            raise ConfigError(f"--sweep {key} is given twice; put all its values in one --sweep {key}=V1,V2,...")
        axes.append((key, values))
    return axes


def grid(axes: list[tuple[str, list[str]]]) -> list[PointSpec]:
    count = 1
    for _key, values in axes:
        count *= len(values)
    if count > MAX_POINTS:
        sizes = " x ".join(str(len(v)) for _k, v in axes)
        raise ConfigError(f"--sweep: {sizes} = {count} points, more than the limit of {MAX_POINTS}; narrow the sweep "
                          "or split it into several.")
    keys = [k for k, _ in axes]
    return [PointSpec(i, tuple(zip(keys, combo))) for i, combo in enumerate(itertools.product(*(v for _, v in axes)))]


def _value_text(value: Any) -> str:
    """A sweep-file value as `--set` reads it back: a string as written when it reads back as
    itself (`1e-06`, `gpu`), anything else as JSON (which is YAML)."""
    if isinstance(value, str) and value and "," not in value:
        try:
            if parse_yaml(value, "value") == value:
                return value
        except ConfigError:
            pass
    return json.dumps(value)


def read_sweep_file(path: str) -> list[PointSpec]:
    """A YAML/JSON list of override sets: `- {lr: 1.0e-6, eps-clip-high: 0.28}`."""
    if not path.strip():
        raise ConfigError("--sweep-file needs a file: a YAML or JSON list of {KEY: VALUE} override sets.")
    data = parse_yaml(read_profile_text(Path(path)), f"--sweep-file {path}", fix="Fix the file.")
    shape = "a YAML or JSON list of {KEY: VALUE} override sets, e.g. [{lr: 1.0e-6}, {lr: 5.0e-7}]"
    if not isinstance(data, list) or not data:
        raise ConfigError(f"--sweep-file {path}: {'an empty list' if data == [] else 'not a list'}; expected {shape}.")
    if len(data) > MAX_POINTS:
        raise ConfigError(f"--sweep-file {path}: {len(data)} points, more than the limit of {MAX_POINTS}; split it.")
    points = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not item:
            raise ConfigError(f"--sweep-file {path}: point {index} is {'empty' if item in ({}, None) else 'not a mapping'}; "
                              f"expected {shape}.")
        points.append(PointSpec(index, tuple((str(k), _value_text(v)) for k, v in item.items())))
    return points


# --- building ---------------------------------------------------------------------------------

BuildPoint = Callable[[list[str], str], tuple[Profile, Plan]]


def _comparable(stage: StagePlan) -> dict[str, Any]:
    out = stage.to_dict()
    out["slurm"] = {k: v for k, v in out["slurm"].items() if k != "comment"}
    return out


def _where(spec: PointSpec, err: Exception) -> str:
    text = str(err)
    for key, _text in spec.overrides:  # the origin of a point's value reads `--sweep KEY`, not `--set KEY`
        text = text.replace(f"--set {key}", f"--sweep {key}")
    return text


def _share_base_scores(plan: Plan, sweep_dir: str) -> Plan:
    """Every point's eval scores the same starting model with the same settings: they share its
    score through the sweep dir instead of each scoring it again."""
    def share(stage: StagePlan) -> StagePlan:
        if stage.name != "eval":
            return stage
        return replace(stage, argv=tuple(with_shared_base_scores(stage.argv, sweep_dir)),
                       step=tuple(with_shared_base_scores(stage.step, sweep_dir)))
    return replace(plan, stages=tuple(share(s) for s in plan.stages))


def build_sweep(points: list[PointSpec], base: Profile, build_point: BuildPoint, stages: tuple[str, ...]) -> SweepPlan:
    """Check every point (profile, checks, plan) and split the plans into the shared stages and
    each point's own; ConfigError naming the point on the first problem."""
    if not points:
        raise ConfigError("--sweep: no points.")
    if "train" not in stages:
        raise ConfigError(f"--stages {','.join(stages)}: a sweep trains once per point; include train.")
    base_save = base.get("paths.save")
    if not base_save:
        raise ConfigError(f"{base.where('paths.save')}: paths.save is not set; each sweep point saves under it.")
    sweep_id = new_chain_id(f"{base.name}-sweep")
    names: dict[str, int] = {}
    built: list[SweepPoint] = []
    shared: tuple[StagePlan, ...] | None = None
    first_plan: Plan | None = None
    for spec in points:
        if any(key in ("paths.save", "save") for key, _ in spec.overrides):
            raise ConfigError(f"sweep point {spec.index} ({spec.label}): paths.save is set per point by the sweep "
                              f"(<paths.save>/sweep-<point name>); sweep something else.")
        if spec.name in names:
            raise ConfigError(f"sweep point {spec.index} ({spec.label}) repeats point {names[spec.name]}.")
        names[spec.name] = spec.index
        save = f"{base_save.rstrip('/')}/sweep-{spec.name}"
        try:
            profile, plan = build_point([*spec.sets, f"paths.save={json.dumps(save)}"], f"{sweep_id}-p{spec.index}")
        except ConfigError as err:
            raise ConfigError(f"sweep point {spec.index} ({spec.label}): {_where(spec, err)}") from None
        own = tuple(s for s in plan.stages if s.name in POINT_STAGES)
        upstream = tuple(s for s in plan.stages if s.name not in POINT_STAGES)
        if shared is None:
            shared, first_plan = upstream, plan
        elif [_comparable(s) for s in upstream] != [_comparable(s) for s in shared]:
            changed = next((b.name for a, b in zip(shared, upstream) if _comparable(a) != _comparable(b)), "an upstream stage")
            raise ConfigError(f"sweep point {spec.index} ({spec.label}) changes stage {changed}, which the sweep runs once "
                              f"for every point; sweep only what train and eval read, or submit separate chains.")
        built.append(SweepPoint(spec, replace(plan, stages=own), save))
    assert first_plan is not None and shared is not None
    runs = [getattr(p.plan, "wandb_run_id", None) for p in built]
    if len([r for r in runs if r]) != len({r for r in runs if r}):
        raise ConfigError(f"{base.where('wandb.wandb-run-id')}: every sweep point would log to the same W&B run "
                          "(wandb.wandb-run-id is pinned); each point needs its own: remove the pin for a sweep.")
    sweep_dir = str(Path(first_plan.chain_dir).parent / sweep_id)
    built = [replace(p, plan=_share_base_scores(p.plan, sweep_dir)) for p in built]
    shared_stages = tuple(replace(s, slurm={**s.slurm, "comment": f"holdem-chain={sweep_id}"}) for s in shared)
    shared_plan = replace(first_plan, chain_id=sweep_id, chain_dir=sweep_dir, stages=shared_stages,
                          warnings=tuple(w for w in first_plan.warnings if "requeue" not in w))
    if getattr(shared_plan, "wandb_run_id", None):  # W&B runs belong to the points' train stages
        shared_plan = replace(shared_plan, wandb_run_id=None)
    keys = tuple(dict.fromkeys(k for p in points for k, _ in p.overrides))
    return SweepPlan(sweep_id, shared_plan, tuple(built), keys)


# --- showing and submitting -------------------------------------------------------------------

def render_sweep_text(sweep: SweepPlan, render_plan: Callable[[Plan], str]) -> str:
    lines = [f"sweep {sweep.sweep_id}: {len(sweep.points)} point(s) over {', '.join(sweep.keys)}; "
             f"shared stages once, then one chain per point", "", "== shared stages ==", render_plan(sweep.shared)]
    for point in sweep.points:
        lines += ["", f"== point {point.spec.index}: {point.spec.label}  (save {point.save}) ==", render_plan(point.plan)]
    return "\n".join(lines)


def submit_sweep(sweep: SweepPlan, profile_data: dict[str, Any], point_data: list[dict[str, Any]]) -> dict[str, Any]:
    """Submit the shared stages, then each point's chain with its dependencies filled in with the
    shared stages' job ids; if Slurm refuses anything, cancel everything this sweep submitted."""
    from cluster.outputs import write_json_atomic
    from cluster.slurm import cancel_jobs, submit_plan

    submitted: list[str] = []
    records: list[dict[str, Any]] = []
    record: dict[str, Any] = {"sweep_id": sweep.sweep_id, "profile": sweep.shared.profile,
                              "profile_path": sweep.shared.profile_path, "keys": list(sweep.keys), "points": []}
    try:
        shared = submit_plan(sweep.shared, profile_data)
        upstream = {s["name"]: s["job_id"] for s in shared["stages"] if s.get("job_id")}
        submitted += upstream.values()
        record["shared"] = {"chain_id": sweep.shared.chain_id, "chain_dir": sweep.shared.chain_dir, "job_ids": upstream}
        for point, data in zip(sweep.points, point_data):
            chain = submit_plan(point.plan, data, upstream=upstream, upstream_stages=sweep.shared)
            own = {s["name"]: s["job_id"] for s in chain["stages"] if s.get("job_id") and s["name"] in POINT_STAGES}
            submitted += own.values()
            records.append(chain)
            record["points"].append({**point.to_dict(), "job_ids": own})
    except SlurmError as exc:
        cancel_jobs(submitted)
        record["submit_failed"] = str(exc)
        write_json_atomic(Path(sweep.sweep_dir) / SWEEP_FILE, record)
        raise SlurmError(f"{exc}. Cancelled every job this sweep had submitted ({len(submitted)})."
                         if submitted else str(exc)) from None
    write_json_atomic(Path(sweep.sweep_dir) / SWEEP_FILE, record)
    record["summary"] = render_submitted(sweep, record)
    return record


def render_submitted(sweep: SweepPlan, record: dict[str, Any]) -> str:
    shared = record.get("shared", {}).get("job_ids", {})
    lines = [f"sweep {sweep.sweep_id} submitted: {len(sweep.points)} point(s); logs in {sweep.sweep_dir}/",
             "  shared   " + (" ".join(f"{n}={j}" for n, j in shared.items()) or "(every upstream stage is complete: skipped)")]
    for point in record["points"]:
        jobs = " ".join(f"{n}={j}" for n, j in point["job_ids"].items())
        lines.append(f"  p{point['index']:<3d} {jobs:24s} {' '.join(f'{k}={v}' for k, v in point['overrides'].items())}")
    lines.append(f"status:  python -m cluster.status {sweep.sweep_id}")
    lines.append(f"follow:  python -m cluster.logs {sweep.sweep_id}-p0 -f")
    return "\n".join(lines)


def describe_overrides(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in overrides.items())


# --- what cluster.status shows for sweeps and the eval stage (pure readers of files) ---------------

SWEEP_FILE = "sweep.json"
TAIL_BYTES = 64 << 10
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
            metric = parse_line(line)  # slime's format, parsed as cluster.metrics does
            if metric is not None and metric.kind == "rollout" and not metric.role:
                values = metric.values
                reward = next((values[k] for k in _REWARD_KEYS if isinstance(values.get(k), (int, float))), None)
                return {"rollout": metric.ident, "reward": reward}
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
