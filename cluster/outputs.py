"""Is a stage's output already complete? Cheap checks on what each stage writes, shared by the
plan (skip a done stage), the launcher (resume from the newest complete checkpoint) and the data
stage (`holdem.data` imports the JSONL rule from here; this module stays stdlib-only and never
imports holdem), and how files other processes poll are written (whole or not at all)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

TRACKER = "latest_checkpointed_iteration.txt"
DIST_METADATA = "metadata.json"  # torch_dist: written last, only when the save is complete
LEGACY_WEIGHTS = "model_optim_rng.pt"  # legacy non-distributed saves: mp_rank_*/model_optim_rng.pt
_ITER = re.compile(r"iter_([0-9]{7,})")
_DIGITS = re.compile(r"[0-9]+")
_SMALL_FILE = 1 << 16  # tracker and metadata.json are a few bytes; never read more
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
    try:
        return _check_jsonl(Path(path), keys, verify_checksum)
    except OSError as exc:  # a dir we may not enter, a file that vanished between two looks
        return False, f"{path} is unreadable ({exc.strerror or exc})"


def _check_jsonl(path: Path, keys: tuple[str, ...], verify_checksum: bool) -> tuple[bool, str]:
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
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
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
    try:
        return _check_hf_dir(Path(path))
    except OSError as exc:
        return False, f"{path} is unreadable ({exc.strerror or exc})"


def _check_hf_dir(path: Path) -> tuple[bool, str]:
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


def checkpoint_dir_complete(path: str | Path) -> tuple[bool, str]:
    """Megatron's own rule for one checkpoint dir (`release/` or `iter_NNNNNNN/`): a torch_dist save
    is complete once `metadata.json` is in it (Megatron writes it LAST, after `common.pt`, the
    `.distcp` shards and `.metadata`; `check_is_distributed_checkpoint` looks for it); a legacy
    save once every `mp_rank_*/` holds `model_optim_rng.pt`. `common.pt` or `.metadata` alone is
    what a save killed half-way leaves, and proves nothing."""
    path = Path(path)
    meta = path / DIST_METADATA
    try:
        if meta.is_file():
            return _check_dist_metadata(meta)
        ranks = sorted(p for p in path.glob("mp_rank_*") if p.is_dir())
    except OSError as exc:
        return False, f"{path} is unreadable ({exc.strerror or exc})"
    if ranks:
        missing = [r.name for r in ranks if not (r / LEGACY_WEIGHTS).is_file()]
        if missing:
            return False, f"{path} is a partial legacy save: {missing[0]}/{LEGACY_WEIGHTS} is missing"
        return True, f"{path} holds {LEGACY_WEIGHTS} in all {len(ranks)} mp_rank_* dir(s)"
    seen = _partial_markers(path)
    return False, f"{path} has no {DIST_METADATA}" + (f" (only {seen}: a save that did not finish)" if seen else "")


def _check_dist_metadata(meta: Path) -> tuple[bool, str]:
    try:
        with meta.open("rb") as fh:
            data = json.loads(fh.read(_SMALL_FILE))
    except (OSError, ValueError, RecursionError) as exc:
        return False, f"{meta} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict) or "sharded_backend" not in data:
        return False, f"{meta} is not Megatron's checkpoint metadata (no 'sharded_backend')"
    return True, f"{meta.parent} holds {DIST_METADATA} ({data['sharded_backend']})"


def _partial_markers(path: Path) -> str:
    try:
        names = [n for n in ("common.pt", ".metadata") if (path / n).exists()]
        shards = sum(1 for _ in path.glob("*.distcp"))
    except OSError:
        return ""
    return ", ".join(names + ([f"{shards} .distcp shard(s)"] if shards else []))


def _read_tracker(tracker: Path) -> tuple[str | None, str]:
    """The dir name a tracker file names (`release` or `iter_NNNNNNN`), or None and why not."""
    try:
        with tracker.open("rb") as fh:
            raw = fh.read(_SMALL_FILE)
        text = raw.decode("ascii").strip()
    except OSError as exc:
        return None, f"{tracker} is unreadable ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return None, f"{tracker} is not text (an iteration number or 'release' expected)"
    if text == "release":
        return "release", ""
    if _DIGITS.fullmatch(text):
        return f"iter_{int(text):07d}", ""
    return None, f"{tracker} holds {text[:40]!r}, neither an iteration nor 'release'"


def megatron_checkpoint(path: str | Path) -> tuple[Path | None, str]:
    """The checkpoint a Megatron dir's tracker names (`release/` or `iter_NNNNNNN/`), when that
    dir is complete (`checkpoint_dir_complete`); else None and why."""
    path = Path(path)
    tracker = path / TRACKER
    try:
        present = tracker.is_file()
    except OSError as exc:
        return None, f"{path} is unreadable ({exc.strerror or exc})"
    if not present:
        return None, f"{path} has no {TRACKER}"
    name, why = _read_tracker(tracker)
    if name is None:
        return None, why
    target = path / name
    if not target.is_dir():
        return None, f"{tracker} names {name}/, which is missing"
    complete, why = checkpoint_dir_complete(target)
    if not complete:
        return None, f"{tracker} names {name}/, which is not complete: {why}"
    return target, f"{path}: {TRACKER} names {name}/, which is complete ({why})"


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
    try:
        iters = sorted(((int(m.group(1)), p) for p in path.glob("iter_*")
                        if (m := _ITER.fullmatch(p.name)) and p.is_dir()), reverse=True)
    except OSError as exc:
        return None, f"{reason}; {path} is unreadable ({exc.strerror or exc})"
    for _, candidate in iters:
        if checkpoint_dir_complete(candidate)[0]:
            return candidate, f"{reason}; newest complete is {candidate.name}/"
    return None, f"{reason}; no complete iter_* dir either" if iters else reason


# --- writing: files other processes poll are written whole or not at all (temp file + rename) ------

def write_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)  # readers see the old file or the new one, never a part
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
