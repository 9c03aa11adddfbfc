"""Is a stage's output already complete? Cheap checks on what each stage writes, shared by the
plan (skip a done stage) and the launcher (resume from the newest complete checkpoint)."""
from __future__ import annotations

import json
import re
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"
_ITER = re.compile(r"^iter_(\d{7})$")
_PROBE_ROWS = 3


def check_jsonl(path: str | Path, keys: tuple[str, ...] = ()) -> tuple[bool, str]:
    """A JSONL file that exists, whose first rows parse as objects with `keys`, and — when
    holdem.data wrote a `<file>.stats.json` beside it — whose size and line count match the
    stats (the same contract as holdem.data.output_is_complete; cluster/ must not import holdem)."""
    path = Path(path)
    if not path.is_file():
        return False, f"{path} does not exist"
    try:
        with path.open("rb") as fh:
            for index, line in zip(range(_PROBE_ROWS), fh):
                row = json.loads(line)
                missing = [k for k in keys if not isinstance(row, dict) or k not in row]
                if missing:
                    return False, f"{path} row {index} lacks {', '.join(missing)}"
            else:
                if path.stat().st_size == 0:
                    return False, f"{path} is empty"
    except (OSError, ValueError) as exc:
        return False, f"{path} does not parse as JSONL ({exc})"
    stats = path.with_name(path.name.removesuffix(".jsonl") + ".stats.json")
    if not stats.is_file():
        return True, f"{path} exists and its first rows parse"
    try:
        meta = json.loads(stats.read_text())
        declared, size = meta["rows_out"], meta.get("bytes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{stats} is unreadable ({exc})"
    if size is not None and size != path.stat().st_size:
        return False, f"{path} has {path.stat().st_size} bytes but {stats.name} says {size}"
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    if lines != declared:
        return False, f"{path} has {lines} rows but {stats.name} says {declared}"
    return True, f"{path} exists with {lines} rows, as {stats.name} says"


def check_hf_dir(path: str | Path) -> tuple[bool, str]:
    """An HF checkpoint dir: config.json and weights (every shard its index names)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return False, f"{path}/config.json does not exist"
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                return False, f"{index} is unreadable ({exc})"
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:
                return False, f"{path} lacks {len(missing)} weight shard(s), e.g. {missing[0]}"
            return True, f"{path} has config.json and all {len(shards)} weight shards"
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
    if not weights:
        return False, f"{path} has config.json but no weights (*.safetensors / *.bin)"
    return True, f"{path} has config.json and {len(weights)} weight file(s)"


def megatron_checkpoint(path: str | Path) -> tuple[Path | None, str]:
    """The complete checkpoint a Megatron dir's tracker names (`release/` or `iter_NNNNNNN/`)."""
    path = Path(path)
    tracker = path / TRACKER
    if not tracker.is_file():
        return None, f"{path} has no {TRACKER}"
    text = tracker.read_text().strip()
    name = "release" if text == "release" else (f"iter_{int(text):07d}" if text.isdigit() else None)
    if name is None:
        return None, f"{tracker} holds {text!r}, neither an iteration nor 'release'"
    target = path / name
    if not target.is_dir() or not any(target.iterdir()):
        return None, f"{tracker} names {name}/, which is missing or empty"
    return target, f"{path}: {TRACKER} names {name}/, which is present"


def check_megatron_dir(path: str | Path) -> tuple[bool, str]:
    found, reason = megatron_checkpoint(path)
    return found is not None, reason


def newest_complete_checkpoint(path: str | Path) -> tuple[Path | None, str]:
    """For resume: the tracker's checkpoint when complete, else the newest complete `iter_*`
    below it (a save that died half-way leaves the tracker pointing at a partial dir)."""
    found, reason = megatron_checkpoint(path)
    if found is not None:
        return found, reason
    path = Path(path)
    iters = sorted((p for p in path.glob("iter_*") if _ITER.match(p.name) and p.is_dir()), reverse=True)
    for candidate in iters:
        if (candidate / ".metadata").exists() or (candidate / "common.pt").exists():
            return candidate, f"{reason}; newest complete is {candidate.name}/"
    return None, reason
