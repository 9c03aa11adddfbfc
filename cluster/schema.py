"""What a profile may contain: sections, our own keys and their types, and value checking.

Keys with dashes inside the slime-facing sections are slime flags, typed by the pinned flag list
(cluster/slime_flags.txt). Keys with underscores are ours and typed here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.slime_flags import FlagInfo

# Sections whose dashed keys are rendered onto train.py's command line, in this order.
SLIME_SECTIONS = (
    "topology", "parallel", "rollout", "dynamic_sampling", "sglang", "algorithm", "model",
    "misc", "plugins", "checkpoint", "eval", "paths", "wandb",
)
OTHER_SECTIONS = ("env", "slurm", "ray", "stages", "container")
TOP_LEVEL = ("extends", "description")

# Free-form maps: any key allowed, values are strings (environment) or sbatch options.
OPEN_MAPS = {("env",), ("slurm", "extra"), ("ray", "health_check"), ("container", "env")}

# Our own keys: dotted path -> type. Types: int+ (>0), int0 (>=0), bool, str, str?, list, map,
# auto-bool ("auto"|true|false), runtime.
OUR_KEYS: dict[str, str] = {
    "eval.enabled": "bool",
    "paths.root": "str",
    "paths.megatron_dir": "str",
    "paths.slime_dir": "str",
    "paths.log_dir": "str",
    "wandb.enabled": "auto-bool",
    "slurm.nodes": "int+",
    "slurm.gpus_per_node": "int0",
    "slurm.partition": "str?",
    "slurm.account": "str?",
    "slurm.qos": "str?",
    "slurm.time": "str",
    "slurm.constraint": "str?",
    "slurm.exclusive": "bool",
    "slurm.cpus_per_task": "int+?",
    "slurm.mem": "str?",
    "slurm.extra": "map",
    "slurm.max_restarts": "int0",
    "slurm.signal_grace_s": "int+",
    "ray.object_store_memory": "int+",
    "ray.num_cpus": "int+?",
    "ray.node_ip": "str?",
    "ray.interface": "str?",
    "ray.head_timeout_s": "int+",
    "ray.ready_timeout_s": "int+",
    "ray.health_check": "map",
    "ray.stop_grace_s": "int+",
    "ray.heartbeat_timeout_s": "int+",
    "ray.head_lost_s": "int+",
    "container.runtime": "runtime",
    "container.image": "str?",
    "container.mounts": "list",
    "container.env": "map",
}
# Keys of each stage (stages.<name>.<key>) and of a stage's slurm overrides.
STAGE_NAMES = ("data", "model", "convert", "train")
STAGE_KEYS = {"command": "list", "slurm": "map", "source": "str", "split": "str", "repo": "str",
              "entrypoint": "list", "working_dir": "str?", "preflight": "bool"}
STAGE_SLURM_KEYS = {"nodes": "int+", "gpus_per_node": "int0", "tasks_per_node": "int+",
                    "cpus_per_task": "int+?", "mem": "str?", "time": "str", "exclusive": "bool",
                    "partition": "str?", "constraint": "str?"}

# slime integers that must be positive (a zero or negative one is a typo, never a setting).
POSITIVE_FLAGS = {
    "actor-num-nodes", "actor-num-gpus-per-node", "rollout-num-gpus", "num-gpus-per-node",
    "tensor-model-parallel-size", "pipeline-model-parallel-size", "context-parallel-size",
    "expert-model-parallel-size", "expert-tensor-parallel-size", "max-tokens-per-gpu",
    "num-rollout", "rollout-batch-size", "n-samples-per-prompt", "global-batch-size",
    "rollout-max-response-len", "over-sampling-batch-size", "rollout-num-gpus-per-engine",
    "sglang-server-concurrency", "save-interval", "eval-interval", "n-samples-per-eval-prompt",
    "eval-max-response-len", "recompute-num-layers",
}


@dataclass(frozen=True)
class BadValue(Exception):
    """A value does not fit its type; `why` completes '<key> = <value>: ...'."""

    why: str


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise BadValue("expected an integer") from None
        if number.is_integer():
            return int(number)
    raise BadValue("expected an integer")


def _as_float(value: Any) -> float | int:
    if isinstance(value, bool):
        raise BadValue("expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadValue("expected a number")


def _scalar(value: Any, type_: str) -> Any:
    if isinstance(value, (list, dict)):
        raise BadValue("expected a single value")
    if type_ == "int":
        return _as_int(value)
    if type_ == "float":
        return _as_float(value)
    if isinstance(value, bool):
        raise BadValue("expected a string, got a boolean (quote it)")
    return value if isinstance(value, str) else str(value)


def coerce_flag(info: FlagInfo, value: Any) -> Any:
    """Check a slime flag's value against its argparse type; return the value to render."""
    if value is None:
        return None
    if info.kind == "flag":
        if not isinstance(value, bool):
            raise BadValue("is a switch: use true or false")
        return value
    type_ = info.type if info.type in ("int", "float") else "str"
    if info.is_list:
        items = value if isinstance(value, list) else [value]
        out = [_scalar(v, type_) for v in items]
    else:
        out = _scalar(value, type_)
        if info.name in POSITIVE_FLAGS and out <= 0:
            raise BadValue("must be a positive integer")
    for item in out if isinstance(out, list) else [out]:
        if info.choices and str(item) not in info.choices:
            raise BadValue(f"must be one of {', '.join(info.choices)}")
    return out


def coerce_ours(type_: str, value: Any) -> Any:
    """Check one of our own keys against its type from OUR_KEYS / STAGE_KEYS."""
    nullable = type_.endswith("?")
    base = type_.rstrip("?")
    if value is None:
        if nullable or base in ("str", "map", "list"):
            return None
        raise BadValue("must be set")
    if base in ("int+", "int0"):
        number = _as_int(value)
        if base == "int+" and number <= 0:
            raise BadValue("must be a positive integer")
        if number < 0:
            raise BadValue("must not be negative")
        return number
    if base == "bool":
        if not isinstance(value, bool):
            raise BadValue("expected true or false")
        return value
    if base == "auto-bool":
        if value != "auto" and not isinstance(value, bool):
            raise BadValue("expected auto, true or false")
        return value
    if base == "runtime":
        if value not in ("none", "pyxis", "apptainer"):
            raise BadValue("must be one of none, pyxis, apptainer")
        return value
    if base == "list":
        if not isinstance(value, list):
            raise BadValue("expected a list")
        return value
    if base == "map":
        if not isinstance(value, dict):
            raise BadValue("expected a mapping")
        return value
    return _scalar(value, "str")
