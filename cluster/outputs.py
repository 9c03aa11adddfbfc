"""Is a stage's output already complete? Cheap checks on what each stage writes, shared by the
plan (skip a done stage), the launcher (resume from the newest complete checkpoint) and the data
stage (`holdem.data` imports the JSONL rule from here; this module stays stdlib-only and never
imports holdem)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"
_ITER = re.compile(r"^iter_(\d{7})$")
_PROBE_ROWS = 3
_CHUNK = 1 << 22


def stats_path_for(path: str | Path) -> Path:
    """`FILE.jsonl` -> `FILE.stats.json` (any other name gets `.stats.json` appended)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return path.with_suffix(".stats.json")
    return path.with_name(path.name + ".stats.json")


def count_lines(path: str | Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            n += chunk.count(b"\n")
    return n


def sha256_of(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def jsonl_stats(path: str | Path) -> dict:
    """The fields `check_jsonl` compares, computed from a finished file: for writers that did not
    count while writing (stand-ins, tests). The data stage counts as it writes the same fields."""
    return {"rows_out": count_lines(path), "bytes": Path(path).stat().st_size, "sha256": sha256_of(path)}


def check_jsonl(path: str | Path, keys: tuple[str, ...] = (), verify_checksum: bool = False) -> tuple[bool, str]:
    """The one completeness rule for a JSONL a stage writes: the file exists and is not empty; the
    `<file>.stats.json` its writer commits last exists, and its `rows_out` and `bytes` match the
    file (its `sha256` too when `verify_checksum`); the first rows parse as objects with `keys`.

    A JSONL without its stats file is what a killed run leaves (or another tool wrote): not complete,
    so the stage runs again. Cheap: a stat, a small JSON read, a few rows and a newline count.
    Returns (complete, why)."""
    path = Path(path)
    stats = stats_path_for(path)
    if not path.is_file():
        return False, f"{path} does not exist"
    if path.stat().st_size == 0:
        return False, f"{path} is empty"
    if not stats.is_file():
        return False, f"{stats} is missing (the run that wrote {path.name} did not finish, or did not write stats)"
    try:
        meta = json.loads(stats.read_text(encoding="utf-8"))
        declared, size = int(meta["rows_out"]), int(meta["bytes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{stats} is unreadable ({type(exc).__name__}: {exc})"
    actual = path.stat().st_size
    if actual != size:
        return False, f"{path} has {actual} bytes, {stats.name} says {size}"
    lines = count_lines(path)
    if lines != declared:
        return False, f"{path} has {lines} lines, {stats.name} says rows_out={declared}"
    probe_failure = _probe_rows(path, keys)
    if probe_failure:
        return False, probe_failure
    if verify_checksum and sha256_of(path) != meta.get("sha256"):
        return False, f"{path} does not match the sha256 in {stats.name}"
    return True, f"{path}: {lines} rows, {size} bytes, matches {stats.name}"


def _probe_rows(path: Path, keys: tuple[str, ...]) -> str | None:
    """Why the first rows are not objects with `keys`, or None when they are."""
    try:
        with path.open("rb") as fh:
            for index, line in zip(range(_PROBE_ROWS), fh):
                row = json.loads(line)
                missing = [k for k in keys if not isinstance(row, dict) or k not in row]
                if missing:
                    return f"{path} row {index} lacks {', '.join(missing)}"
    except (OSError, ValueError) as exc:
        return f"{path} does not parse as JSONL ({exc})"
    return None


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
