"""Load a profile: `extends:` chains, the seed's environment variables, `--set` overrides,
validation of every key and value, `{section.key}` references, and `--nodes` scaling.

Precedence, lowest first: the base file < each file that extends it < the environment
(RUN_PROFILE, HF_CHECKPOINT, REF_LOAD, SAVE_DIR, PROMPT_DATA, LOAD_CKPT) < `--set KEY=VALUE`
< `--nodes` / `--gpus-per-node`.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from cluster.errors import ProfileError
from cluster.schema import (
    OPEN_MAPS, OTHER_SECTIONS, OUR_KEYS, SLIME_SECTIONS, STAGE_KEYS, STAGE_NAMES, STAGE_SLURM_KEYS,
    TOP_LEVEL, BadValue, coerce_flag, coerce_ours,
)
from cluster.slime_flags import load_flag_table

PROFILES_DIR = Path(os.environ.get("HOLDEM_PROFILES_DIR", Path(__file__).resolve().parent.parent / "profiles"))

# The seed's environment variables and the profile keys they set.
ENV_KEYS = {
    "HF_CHECKPOINT": "paths.hf-checkpoint",
    "REF_LOAD": "paths.ref-load",
    "SAVE_DIR": "paths.save",
    "PROMPT_DATA": "paths.prompt-data",
    "LOAD_CKPT": "paths.load",
}
_REF = re.compile(r"\{([A-Za-z_][\w-]*(?:\.[\w-]+)+)\}")
Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """A merged, validated profile. `origin` says where each leaf value was set."""

    name: str
    path: Path
    data: dict[str, Any]
    origin: dict[Path_, str] = field(default_factory=dict)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def where(self, dotted: str) -> str:
        """The file (or 'environment X' / '--set') that gave this key its value."""
        key = tuple(dotted.split("."))
        while key and key not in self.origin:
            key = key[:-1]
        return self.origin.get(key, str(self.path))

    def section(self, name: str) -> dict[str, Any]:
        return self.data.get(name) or {}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_profile_path(name: str, relative_to: Path | None = None) -> Path:
    """A profile name (`smoke`) from profiles/, or a path to a YAML file."""
    candidates = []
    if relative_to is not None:
        candidates += [relative_to / name, relative_to / f"{name}.yaml"]
    candidates += [Path(name), PROFILES_DIR / f"{name}.yaml"]
    looks_like_path = "/" in name or name.endswith((".yaml", ".yml"))
    for cand in candidates:
        if cand.is_file() and (looks_like_path or cand.suffix in (".yaml", ".yml")):
            return cand.resolve()
    hint = difflib.get_close_matches(name, available_profiles(), n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    raise ProfileError(
        f"unknown profile {name!r}{suggestion}: no such file, and not one of "
        f"{', '.join(available_profiles()) or 'nothing'} in {PROFILES_DIR}. "
        "Pass a name from profiles/ or a path to a YAML file."
    )


def load_yaml_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc.strerror}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ProfileError(f"{where}: YAML syntax error: {exc.problem or exc}. Fix the file.") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: YAML error: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping of sections, got {type(data).__name__}.")
    return data


def _merge(base: dict, top: dict, origin: dict[Path_, str], source: str, prefix: Path_ = ()) -> dict:
    """Deep-merge `top` onto `base`; maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        path = prefix + (str(key),)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, source, path)
        else:
            out[key] = copy.deepcopy(value)
            origin[path] = source
    return out


def _load_chain(path: Path, origin: dict[Path_, str], seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        cycle = " -> ".join(p.name for p in seen + (path,))
        raise ProfileError(f"{path}: extends cycle {cycle}. Remove one of the extends: lines.")
    data = load_yaml_file(path)
    parent_name = data.pop("extends", None)
    merged: dict = {}
    if parent_name is not None:
        if not isinstance(parent_name, str):
            raise ProfileError(f"{path}: extends must be a profile name or path, got {parent_name!r}.")
        try:
            parent = resolve_profile_path(parent_name, relative_to=path.parent)
        except ProfileError as exc:
            raise ProfileError(f"{path}: extends: {exc}") from None
        merged = _load_chain(parent, origin, seen + (path,))
    return _merge(merged, data, origin, str(path))


def parse_set(item: str) -> tuple[str, Any]:
    """`KEY=VALUE` -> (key, YAML-typed value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ProfileError(f"--set {item!r}: expected KEY=VALUE, e.g. --set rollout-batch-size=8 or --set slurm.partition=gpu.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _find_bare(data: dict, key: str) -> list[Path_]:
    return [(section, key) for section, body in data.items() if isinstance(body, dict) and key in body]


def _set_path(data: dict, path: Path_, value: Any) -> None:
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _resolve_key(data: dict, key: str, source: str) -> Path_:
    if "." in key:
        return tuple(key.split("."))
    hits = _find_bare(data, key)
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ProfileError(f"{source} {key}: the name sits in several sections ({', '.join('.'.join(h) for h in hits)}); use a dotted path.")
    if load_flag_table().get(key):
        raise ProfileError(f"{source} {key}: a slime flag the profile does not set yet; give its section, e.g. misc.{key}=VALUE.")
    raise ProfileError(f"{source} {key}: unknown key{_suggest(key, _all_keys(data))}. Use a dotted path (section.key) or a slime flag name.")


def _all_keys(data: dict) -> list[str]:
    keys = []
    for section, body in data.items():
        keys.append(section)
        if isinstance(body, dict):
            keys += [f"{section}.{k}" for k in body] + list(body)
    return keys


def _suggest(name: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def apply_overrides(data: dict, origin: dict[Path_, str], env: Mapping[str, str], sets: Iterable[str]) -> dict:
    for var, dotted in ENV_KEYS.items():
        if env.get(var):
            path = tuple(dotted.split("."))
            _set_path(data, path, env[var])
            origin[path] = f"environment {var}"
    for item in sets:
        key, value = parse_set(item)
        path = _resolve_key(data, key, "--set")
        _set_path(data, path, value)
        origin[path] = f"--set {key}"
    return data


def _validate(data: dict, where) -> None:
    """Every key known, every value of the right type (coerced in place)."""
    flags = load_flag_table()
    for section, body in list(data.items()):
        if section in TOP_LEVEL:
            continue
        if section not in SLIME_SECTIONS + OTHER_SECTIONS:
            raise ProfileError(f"{where((section,))}: unknown section {section}{_suggest(section, SLIME_SECTIONS + OTHER_SECTIONS)}.")
        if body is None:
            data[section] = {}
            continue
        if not isinstance(body, dict):
            raise ProfileError(f"{where((section,))}: section {section} must be a mapping.")
        if (section,) in OPEN_MAPS:
            _validate_open_map(section, body, where)
            continue
        if section == "stages":
            _validate_stages(body, where)
            continue
        for key, value in body.items():
            body[key] = _check_key(section, str(key), value, flags, where)


def _check_key(section: str, key: str, value: Any, flags, where) -> Any:
    dotted = f"{section}.{key}"
    try:
        if section in SLIME_SECTIONS and dotted not in OUR_KEYS:
            info = flags.get(key)
            if info is None:
                hint = flags.closest(key)
                suggestion = f" (did you mean {hint}?)" if hint else ""
                raise ProfileError(
                    f"{where((section, key))}: unknown key {dotted}{suggestion}: not a flag of the pinned "
                    f"slime ({load_flag_table().source.split(' at ')[-1][:40]}). Fix the name or remove it.")
            return coerce_flag(info, value)
        if (section, key) in OPEN_MAPS or dotted in OUR_KEYS:
            return coerce_ours(OUR_KEYS.get(dotted, "map"), value)
    except BadValue as exc:
        raise ProfileError(f"{where((section, key))}: {dotted} = {value!r}: {exc.why}.") from None
    candidates = [k for k in OUR_KEYS if k.startswith(section + ".")]
    raise ProfileError(f"{where((section, key))}: unknown key {dotted}{_suggest(dotted, candidates)}.")


def _validate_open_map(section: str, body: dict, where) -> None:
    for key, value in body.items():
        if isinstance(value, (dict, list)):
            raise ProfileError(f"{where((section, key))}: {section}.{key} must be a plain value.")
        body[key] = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))


def _validate_stages(body: dict, where) -> None:
    for stage, spec in body.items():
        if stage not in STAGE_NAMES:
            raise ProfileError(f"{where(('stages', stage))}: unknown stage stages.{stage}{_suggest(stage, STAGE_NAMES)}; stages are {', '.join(STAGE_NAMES)}.")
        if not isinstance(spec, dict):
            raise ProfileError(f"{where(('stages', stage))}: stages.{stage} must be a mapping.")
        for key, value in spec.items():
            table = STAGE_KEYS if key != "slurm" else None
            path = ("stages", stage, key)
            if key not in STAGE_KEYS:
                raise ProfileError(f"{where(path)}: unknown key stages.{stage}.{key}{_suggest(key, STAGE_KEYS)}.")
            try:
                spec[key] = coerce_ours(table[key] if table else "map", value)
            except BadValue as exc:
                raise ProfileError(f"{where(path)}: stages.{stage}.{key} = {value!r}: {exc.why}.") from None
        for key, value in (spec.get("slurm") or {}).items():
            path = ("stages", stage, "slurm", key)
            if key not in STAGE_SLURM_KEYS:
                raise ProfileError(f"{where(path)}: unknown key stages.{stage}.slurm.{key}{_suggest(key, STAGE_SLURM_KEYS)}.")
            if isinstance(value, str) and _REF.fullmatch(value):
                continue  # checked once the reference is resolved
            try:
                spec["slurm"][key] = coerce_ours(STAGE_SLURM_KEYS[key], value)
            except BadValue as exc:
                raise ProfileError(f"{where(path)}: stages.{stage}.slurm.{key} = {value!r}: {exc.why}.") from None


def _lookup(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def resolve_refs(data: dict, where) -> dict:
    """Replace `{section.key}` in strings by the referenced value (typed when it is the whole
    string). References may chain; a cycle or a missing key is an error."""

    def resolve(value: Any, path: Path_, stack: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, path + (k,), stack) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, path, stack) for v in value]
        if not isinstance(value, str) or "{" not in value:
            return value

        def target(ref: str) -> Any:
            if ref in stack:
                raise ProfileError(f"{where(path)}: reference cycle {' -> '.join(stack + (ref,))}.")
            try:
                raw = _lookup(data, ref)
            except KeyError:
                raise ProfileError(f"{where(path)}: {'.'.join(path)} refers to {{{ref}}}, which is not in the profile{_suggest(ref, _all_keys(data))}.") from None
            return resolve(raw, tuple(ref.split(".")), stack + (ref,))

        whole = _REF.fullmatch(value)
        if whole:
            return target(whole.group(1))
        return _REF.sub(lambda m: str(target(m.group(1))), value)

    return resolve(data, (), ())


def _absolute_paths(data: dict, cwd: Path) -> None:
    """Relative paths are relative to the submit directory; jobs run elsewhere, so fix them now."""
    for key, value in (data.get("paths") or {}).items():
        if isinstance(value, str) and value and not value.startswith(("/", "{")):
            data["paths"][key] = str((cwd / value).resolve())


def load_profile(name: str, sets: Iterable[str] = (), env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Profile:
    """Read, merge, override, validate and resolve a profile."""
    env = os.environ if env is None else env
    path = resolve_profile_path(name)
    origin: dict[Path_, str] = {}
    data = _load_chain(path, origin)
    data = apply_overrides(data, origin, env, sets)
    where = lambda p: Profile(name, path, data, origin).where(".".join(p))  # noqa: E731
    _validate(data, where)
    _absolute_paths(data, cwd or Path.cwd())
    data = resolve_refs(data, where)
    _validate_stages(data.get("stages") or {}, where)  # resolved references get their types checked
    return Profile(Path(name).stem if "/" in name else name, path, data, origin)
