"""What a profile may contain: sections, our own keys and their types, and value checking.

Keys with dashes inside the slime-facing sections are slime flags, typed by the pinned flag list
(cluster/profile/slime_flags.txt). Keys with underscores are ours and typed here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cluster.profile.slime_flags import FlagInfo

# Sections whose dashed keys are rendered onto train.py's command line, in this order.
SLIME_SECTIONS = (
    "topology", "parallel", "rollout", "dynamic_sampling", "sglang", "algorithm", "model",
    "misc", "plugins", "checkpoint", "eval", "paths", "wandb",
)
OTHER_SECTIONS = ("env", "slurm", "ray", "network", "stages", "container", "watchdog")
TOP_LEVEL = ("extends", "description")

# Free-form maps: any key allowed, values are strings (environment) or sbatch options.
OPEN_MAPS = {("env",), ("slurm", "extra"), ("ray", "health_check"), ("container", "env")}

# Our own keys: dotted path -> type. Types: int+ (>0), int0 (>=0), bool, str, str?, list, argv (list of words), map,
# auto-bool ("auto"|true|false), runtime, ray-auth ("token"|"disabled"), duration (a Slurm time limit).
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
    "slurm.time": "duration",
    "slurm.constraint": "str?",
    "slurm.exclusive": "bool",
    "slurm.cpus_per_task": "int+?",
    "slurm.mem": "str?",
    "slurm.extra": "map",
    "slurm.max_restarts": "int0",
    # a node the launcher blames (lost mid-run, failed GPU check) is left out of requeues, this many in all
    "slurm.max_excluded_nodes": "int0",
    "slurm.signal_grace_s": "int+",
    # true: the compute nodes (convert, train, eval) have no internet: HF_HUB_OFFLINE=1, W&B must be offline
    "slurm.compute_offline": "bool",
    "ray.object_store_memory": "int+",
    "ray.num_cpus": "int+?",
    "ray.node_ip": "str?",  # deprecated: network.cidr <ip>/32
    "ray.interface": "str?",  # deprecated alias of network.interface
    # one network setting (cluster/launcher/network.py): a NIC name or an IPv4 network; null: the hostname's address
    "network.interface": "str?",
    "network.cidr": "str?",
    "ray.head_timeout_s": "int+",
    "ray.ready_timeout_s": "int+",
    "ray.health_check": "map",
    "ray.stop_grace_s": "int+",
    "ray.heartbeat_timeout_s": "int+",
    "ray.head_lost_s": "int+",
    "ray.auth": "ray-auth",
    # the stall watchdog on node 0 (cluster/launcher/watchdog.py): seconds without progress; null = off
    "watchdog.stall_s": "int+?",
    "watchdog.on_stall": "on-stall",
    "container.runtime": "runtime",
    "container.image": "str?",
    "container.mounts": "list",
    "container.env": "map",
    # true: the image has slime pip-installed, so the convert/train PYTHONPATH leaves paths.slime_dir out
    "container.slime_installed": "bool",
}
# Keys of each stage (stages.<name>.<key>) and of a stage's slurm overrides.
STAGE_NAMES = ("data", "model", "convert", "train", "eval", "sync")
STAGE_KEYS = {"command": "argv", "slurm": "map", "source": "str", "split": "str", "repo": "str", "revision": "str?",
              "entrypoint": "argv", "working_dir": "str?", "preflight": "bool",
              # stages.<name>.enabled: in the chain when --stages is not given (eval: off unless true)
              "enabled": "bool",
              # the eval stage (cluster/launcher/evaluate.py): export and server commands, what to score
              "export": "argv", "server": "argv", "mode": "str", "limit": "int+?", "server_timeout_s": "int+",
              "port_base": "int+", "tmp_root": "str"}
STAGE_SLURM_KEYS = {"nodes": "int+", "gpus_per_node": "int0", "tasks_per_node": "int+",
                    "cpus_per_task": "int+?", "mem": "str?", "time": "duration", "exclusive": "bool",
                    "partition": "str?", "constraint": "str?"}

# Keys every profile must set (after extends, --set and references): what the checks, the plan
# and the launch spec read without a default.
REQUIRED = (
    "slurm.nodes", "slurm.gpus_per_node", "slurm.time", "slurm.signal_grace_s",
    "topology.actor-num-nodes", "topology.actor-num-gpus-per-node", "topology.num-gpus-per-node",
    "paths.log_dir", "stages.data.command", "stages.model.command", "stages.convert.command",
    "stages.train.entrypoint",
)

# A Slurm time limit: minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S (what sbatch --time takes and
# cluster.slurm.parse_time_minutes reads).
DURATION = re.compile(r"\d{1,7}(?::\d{1,2}){0,2}|\d{1,5}-\d{1,2}(?::\d{1,2}){0,2}")
MAX_INT = 2**63 - 1

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
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise BadValue("expected an integer") from None
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise BadValue("expected an integer")
        number = int(number)
    if not isinstance(number, int):
        raise BadValue("expected an integer")
    if abs(number) > MAX_INT:
        raise BadValue("out of range")
    return number


def _as_float(value: Any) -> float | int:
    if isinstance(value, bool):
        raise BadValue("expected a number, got a boolean")
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise BadValue("expected a number") from None
    if not isinstance(number, (int, float)):
        raise BadValue("expected a number")
    if isinstance(number, float) and not math.isfinite(number):
        raise BadValue("not a finite number; give a real number")
    return number


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
    if base == "ray-auth":
        if value not in ("token", "disabled"):
            raise BadValue("must be token (a fresh random token per job, the default) or disabled")
        return value
    if base == "duration":
        return _duration(value)
    if base == "on-stall":
        if value not in ("fail", "requeue"):
            raise BadValue("must be fail (end the job) or requeue (scontrol requeue it)")
        return value
    if base == "runtime":
        if value not in ("none", "pyxis", "apptainer"):
            raise BadValue("must be one of none, pyxis, apptainer")
        return value
    if base == "argv":
        if not isinstance(value, list):
            raise BadValue("expected a list of command-line words, e.g. [python3, train.py]")
        for word in value:
            if word is None or isinstance(word, (bool, list, dict)):
                raise BadValue(f"each word must be a string or a number, got {word!r}")
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


def _duration(value: Any) -> str:
    """A Slurm time limit as sbatch takes it; an integer is minutes."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise BadValue("expected a Slurm time limit such as \"24:00:00\" (H:M:S) or \"1-00:00:00\" (D-H:M:S)")
    text = str(int(value)) if isinstance(value, (int, float)) else str(value).strip()
    if not DURATION.fullmatch(text):
        raise BadValue("expected a Slurm time limit such as \"24:00:00\" (H:M:S), \"1-00:00:00\" (D-H:M:S) or minutes; "
                       "quote it in YAML")
    if not any(ch in "123456789" for ch in text):
        raise BadValue("a time limit of zero; give the job some time")
    return text
