"""Load a profile: `extends:` chains, the seed's environment variables, `--set` overrides,
validation of every key and value, `{section.key}` references, and `--nodes` scaling.

Precedence, lowest first: the base file < each file that extends it < the environment
(RUN_PROFILE, HF_CHECKPOINT, REF_LOAD, SAVE_DIR, PROMPT_DATA, LOAD_CKPT) < `--set KEY=VALUE`
< `--nodes` / `--gpus-per-node`.
"""
from __future__ import annotations

import codecs
import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from cluster.errors import ProfileError
from cluster.profile.schema import (
    OPEN_MAPS, OTHER_SECTIONS, OUR_KEYS, REQUIRED, SLIME_SECTIONS, STAGE_KEYS, STAGE_NAMES, STAGE_SLURM_KEYS,
    TOP_LEVEL, BadValue, coerce_flag, coerce_ours,
)
from cluster.secrets import export_hint, find_secrets, is_secret_name, secret_env_values, word_problem
from cluster.profile.slime_flags import load_flag_table

PROFILES_DIR = Path(os.environ.get("HOLDEM_PROFILES_DIR", Path(__file__).resolve().parents[2] / "profiles"))

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

# Bounds: a profile is a few KB; anything far beyond is a mistake or an attack, refused quickly.
MAX_PROFILE_BYTES = 1 << 20  # per file
MAX_NODES = 20_000  # YAML nodes per file or --set value
MAX_DEPTH = 16  # nesting of mappings and lists
MAX_EXTENDS = 16  # files in an extends: chain
MAX_SET_CHARS = 64 << 10  # one --set value
MAX_REF_DEPTH = 16  # {a.b} -> {c.d} -> ...
MAX_RESOLVED_CHARS = 8 << 20  # all strings after resolving references
_KEY_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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
    if not name or "\0" in name:
        raise ProfileError(f"profile name {name!r}: give a name from profiles/ or a path to a YAML file.")
    unreadable: list[tuple[Path, OSError]] = []
    for cand in candidates:
        try:
            found = cand.is_file() and (looks_like_path or cand.suffix in (".yaml", ".yml"))
        except OSError as exc:  # e.g. a directory on the way that this user cannot enter
            unreadable.append((cand, exc))
            continue
        if found:
            try:
                return cand.resolve()
            except (OSError, RuntimeError):
                return Path(os.path.abspath(cand))
    if unreadable and (looks_like_path or len(unreadable) == len(candidates)):
        cand, exc = unreadable[0]
        raise ProfileError(f"{cand}: cannot look at the profile ({exc.strerror or exc}); check the permissions of "
                           "the directories on its path, or copy the profile somewhere you can read.")
    hint = difflib.get_close_matches(name, available_profiles(), n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else ""
    raise ProfileError(
        f"unknown profile {name!r}{suggestion}: no such file, and not one of "
        f"{', '.join(available_profiles()) or 'nothing'} in {PROFILES_DIR}. "
        "Pass a name from profiles/ or a path to a YAML file."
    )


class _Refused(yaml.MarkedYAMLError):
    """A YAML feature profiles do not allow; `problem` is the one-line reason."""


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1's implicit types minus its traps: `24:00:00` (base 60), `0755` (octal), `yes`/`on`
    (booleans), dates, `<<` merge keys and `=` stay strings. Booleans are true/false only."""

    yaml_implicit_resolvers: dict = {}


for _tag, _regexp, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Resolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regexp), list(_first))


_WHOLE = re.compile(r"[-+]?[0-9]{1,18}")


def _whole_number(text: str, mark: Any) -> int:
    """An int value: decimal digits (with `_` separators), at most 18 of them."""
    text = text.replace("_", "")
    if not _WHOLE.fullmatch(text):
        raise _Refused(None, None, f"{text[:40]!r} is not a whole number of at most 18 digits", mark)
    return int(text)


class _Constructor(yaml.constructor.SafeConstructor):
    """Plain values only (no binary, dates, sets, ...). It constructs the scalars `_scalar` does not
    handle itself (explicit tags); mappings and lists are built by `_build_events`."""

    yaml_constructors = {tag: fn for tag, fn in yaml.constructor.SafeConstructor.yaml_constructors.items()
                         if tag in {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "seq", "map")}}

    def construct_undefined(self, node):
        raise _Refused(None, None, f"the tag {node.tag} is not allowed in a profile; write a plain value", node.start_mark)

    def construct_yaml_int(self, node):
        return _whole_number(self.construct_scalar(node), node.start_mark)

    def construct_yaml_float(self, node):
        text = self.construct_scalar(node)
        if ":" in text:
            raise _Refused(None, None, f"{text!r} is a base-60 number; quote it", node.start_mark)
        return super().construct_yaml_float(node)


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)
_Constructor.add_constructor(None, _Constructor.construct_undefined)  # every other tag

if getattr(yaml, "__with_libyaml__", False):
    class _Loader(yaml.cyaml.CParser, _Constructor, _Resolver):  # libyaml parses; our rules construct
        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            _Constructor.__init__(self)
            _Resolver.__init__(self)
else:  # pragma: no cover - PyYAML without libyaml
    class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,  # type: ignore[no-redef]
                  _Constructor, _Resolver):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Constructor.__init__(self)
            _Resolver.__init__(self)


_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _SEQ, _MAP = (_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
_NO_KEY = object()


def _build(text: str) -> Any:
    """One document -> plain values, in one pass over libyaml's events: aliases (no expansion bombs,
    no self-reference), nesting beyond MAX_DEPTH, more than MAX_NODES values and a second document
    are refused when they are reached, before anything is built from them; mapping keys are unique
    strings; scalars follow _Resolver and _Constructor's rules."""
    loader = _Loader(text)
    try:
        return _build_events(loader)
    finally:
        loader.dispose()


def _build_events(loader: Any) -> Any:
    # frames: [container, start mark, key (or _NO_KEY), {key: its mark}]
    stack: list[list[Any]] = []
    root: Any = None
    nodes = documents = 0
    while loader.check_event():
        event = loader.get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            value, mark = _scalar(loader, event), event.start_mark
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            is_map = kind is yaml.MappingStartEvent
            tag = event.tag
            if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                _refuse_collection_tag(tag, is_map, event.start_mark)
            stack.append([{} if is_map else [], event.start_mark, _NO_KEY, {} if is_map else None])
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(None, None, f"more than {MAX_NODES} values: far more than any profile needs",
                               event.start_mark)
            if len(stack) > MAX_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep: far more than any profile "
                                           "needs", event.start_mark)
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value, mark = stack[-1][0], stack[-1][1]
            stack.pop()
        elif kind is yaml.AliasEvent:
            raise _Refused(None, None, f"the alias *{event.anchor} is not allowed in a profile (anchors and aliases can "
                                       "expand without bound); write the value out, or use extends: or a "
                                       "{section.key} reference", event.start_mark)
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Refused(None, None, "a second YAML document (---): a profile is one document; remove the ---",
                               event.start_mark)
            continue
        else:  # stream start/end, document end
            continue
        if kind is yaml.ScalarEvent:
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(None, None, f"more than {MAX_NODES} values: far more than any profile needs", mark)
        if not stack:
            root = value
            continue
        frame = stack[-1]
        if frame[3] is None:
            frame[0].append(value)
        elif frame[2] is _NO_KEY:
            if not isinstance(value, str):
                raise _Refused(None, None, f"the key {value!r} is not a string: keys are names; quote it "
                                           f"(\"{value}\":) or fix the indentation", mark)
            first = frame[3].get(value)
            if first is not None:
                raise _Refused(None, None, f"duplicate key {value!r} (first at line {first.line + 1}): YAML would "
                                           "silently keep only the last one; merge them into one", mark)
            frame[3][value] = mark
            frame[2] = value
        else:
            frame[0][frame[2]] = value
            frame[2] = _NO_KEY
    return root


def _scalar(loader: Any, event: Any) -> Any:
    """A scalar event -> its value: implicit types by _Resolver (true/false, whole numbers,
    decimals, null; everything else is text), explicit tags by _Constructor."""
    value, tag = event.value, event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value in ("true", "True", "TRUE")
        if tag == _INT:
            return _whole_number(value, event.start_mark)
    elif tag == _STR:
        return value
    elif tag in (_MAP, _SEQ):
        raise yaml.constructor.ConstructorError(None, None, f"expected a {'mapping' if tag == _MAP else 'sequence'} "
                                                            "node, but found scalar", event.start_mark)
    node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
    try:
        return loader.construct_object(node)
    except (KeyError, ValueError, OverflowError, IndexError):  # an explicit !!bool / !!float on a value that is none
        raise _Refused(None, None, f"{value[:40]!r} is not a valid {tag.rpartition(':')[2]}; write a plain value",
                       event.start_mark) from None


def _refuse_collection_tag(tag: str, is_map: bool, mark: Any) -> None:
    if tag in (_MAP, _SEQ):  # !!seq on a mapping, !!map on a list
        raise yaml.constructor.ConstructorError(None, None, f"expected a {'sequence' if is_map else 'mapping'} node, "
                                                            f"but found {'mapping' if is_map else 'sequence'}", mark)
    raise _Refused(None, None, f"the tag {tag} is not allowed in a profile; write a plain value", mark)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def parse_yaml(text: str, source: str, fix: str = "Fix the file.", lines: bool = True) -> Any:
    """One YAML document under the profile rules -> plain Python values; ProfileError (one line,
    starting with `source`, with line:column when `lines`) for anything else."""
    bad = re.search(r"[\ud800-\udfff]", text)
    if bad:  # undecodable bytes (e.g. from a non-UTF-8 command line) cannot be YAML text
        raise ProfileError(f"{source}: contains bytes that are not UTF-8 text ({bad.group()!r}). {fix}")
    try:
        return _build(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None and lines else source
        if isinstance(exc, _Refused):
            raise ProfileError(f"{where}: {_one_line(exc.problem)}.") from None
        problem = _one_line(" ".join(p for p in (exc.context, exc.problem) if p) or exc)
        raise ProfileError(f"{where}: YAML syntax error: {problem}. {fix}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        where = f"{source}:{line}" if lines else source
        raise ProfileError(f"{where}: character {exc.character!r} is not allowed in YAML ({_one_line(exc.reason)}). {fix}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: YAML error: {_one_line(exc)}. {fix}") from None
    except (RecursionError, MemoryError):
        raise ProfileError(f"{source}: too large or too deeply nested to read. {fix}") from None


def read_profile_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_PROFILE_BYTES, strictly UTF-8 (a UTF-8 BOM is
    allowed). Never blocks on a FIFO or a device."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ProfileError(f"{path}: not a regular file; a profile is a YAML file.")
            raw = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc.strerror or exc}).") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: larger than {MAX_PROFILE_BYTES >> 20} MiB; a profile is a few KB of YAML: "
                           "is this the right file?")
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if raw.startswith(bom):
            raise ProfileError(f"{path}: the file is {name}-encoded; profiles are UTF-8: save it as UTF-8 "
                               f"(e.g. iconv -f {name} -t UTF-8).")
    if b"\0" in raw:
        raise ProfileError(f"{path}: the file contains NUL bytes (binary, or UTF-16 without a byte-order mark); "
                           "profiles are UTF-8 text.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ProfileError(f"{path}:{line}:{column}: not UTF-8 (byte 0x{raw[exc.start]:02x}); profiles are UTF-8: "
                           "save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8).") from None


def load_yaml_file(path: Path) -> dict[str, Any]:
    data = parse_yaml(read_profile_text(path), str(path))
    if data is None:
        raise ProfileError(f"{path}: the profile is empty (or only comments); start it with `extends: base` "
                           f"(or {', '.join(n for n in available_profiles() if n != 'base') or 'another profile'}) "
                           "and add the values to change.")
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping of sections (e.g. `slurm:`), got a "
                           f"{type(data).__name__}.")
    return data


def _merge(base: dict, top: dict, origin: dict[Path_, str], source: str, prefix: Path_ = ()) -> dict:
    """Deep-merge `top` onto `base`; maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        path = prefix + (str(key),)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, source, path)
        else:
            out[key] = value  # `top` is a fresh parse of one file, used only here: no copy needed
            origin[path] = source
    return out


def _load_chain(path: Path, origin: dict[Path_, str], seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        cycle = " -> ".join(p.name for p in seen + (path,))
        raise ProfileError(f"{path}: extends cycle {cycle}. Remove one of the extends: lines.")
    if len(seen) >= MAX_EXTENDS:
        raise ProfileError(f"{path}: more than {MAX_EXTENDS} profiles in the extends: chain; shorten it.")
    data = load_yaml_file(path)
    parent_name = data.pop("extends", None)
    merged: dict = {}
    if parent_name is not None:
        if not isinstance(parent_name, str) or not parent_name.strip():
            raise ProfileError(f"{path}: extends must be a profile name or path, got {parent_name!r}.")
        try:
            parent = resolve_profile_path(parent_name, relative_to=path.parent)
        except ProfileError as exc:
            raise ProfileError(f"{path}: extends: {exc}") from None
        merged = _load_chain(parent, origin, seen + (path,))
    return _merge(merged, data, origin, str(path))


def _shown(item: str) -> str:
    """How an unparseable --set argument is quoted back: not at all if it may carry a secret."""
    return "<not shown: it may hold a secret>" if word_problem(item) or is_secret_name(item.partition("=")[0]) \
        else repr(item[:80] + ("..." if len(item) > 80 else ""))


def parse_set(item: str) -> tuple[str, Any]:
    """`KEY=VALUE` -> (key, value parsed as YAML under the profile rules)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProfileError(f"--set {_shown(item)}: expected KEY=VALUE, e.g. --set rollout-batch-size=8 or --set slurm.partition=gpu.")
    parts = key.split(".")
    if len(parts) > MAX_DEPTH or not all(_KEY_PART.fullmatch(part) for part in parts):
        raise ProfileError(f"--set {_shown(key)}: KEY must be a slime flag name or a dotted path of names "
                           "(letters, digits, - and _), e.g. slurm.partition.")
    if len(raw) > MAX_SET_CHARS:
        raise ProfileError(f"--set {key}: the value is longer than {MAX_SET_CHARS >> 10} KiB; a profile value is short.")
    if not raw.strip():
        return key, None
    value = parse_yaml(raw, f"--set {key}", fix=f"Quote the value: --set '{key}=\"...\"'.", lines="\n" in raw)
    return key, value


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
    if is_secret_name(key.rpartition(".")[2]):
        raise ProfileError(f"{source} {key}: a secret never goes on the command line or into a profile; "
                           f"{export_hint(key.rpartition('.')[2])}.")
    if key in TOP_LEVEL:
        raise ProfileError(f"{source} {key}: {key} is read from the profile files only; write it in the profile.")
    if "." in key:
        return tuple(key.split("."))
    if key in data or key in SLIME_SECTIONS + OTHER_SECTIONS:
        return (key,)  # a whole section
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


_OPEN_MAP_KEYS = {"env": (re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "an environment variable name")}


def _validate_open_map(section: str, body: dict, where) -> None:
    pattern, what = _OPEN_MAP_KEYS.get(section.rpartition(".")[2], (None, ""))
    for key, value in body.items():
        if pattern is not None and not pattern.fullmatch(str(key)):
            raise ProfileError(f"{where(tuple(section.split('.')) + (key,))}: {section}.{key}: the key must be {what}.")
        if isinstance(value, (dict, list)):
            raise ProfileError(f"{where(tuple(section.split('.')) + (key,))}: {section}.{key} must be a plain value.")
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
    string). References may chain; a cycle, a missing key, a reference to a mapping or a list, or
    to null inside a longer string is an error. Each reference is resolved once, chains are at most
    MAX_REF_DEPTH long and all resolved strings together at most MAX_RESOLVED_CHARS."""
    cache: dict[str, Any] = {}
    budget = [MAX_RESOLVED_CHARS]

    def spend(text: str, path: Path_) -> str:
        budget[0] -= len(text)
        if budget[0] < 0:
            raise ProfileError(f"{where(path)}: {{section.key}} references expand the profile beyond "
                               f"{MAX_RESOLVED_CHARS >> 20} MiB of text; simplify them.")
        return text

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
            if len(stack) >= MAX_REF_DEPTH:
                raise ProfileError(f"{where(path)}: references chained more than {MAX_REF_DEPTH} deep "
                                   f"({' -> '.join(stack[:3])} -> ...); refer to the value directly.")
            if ref not in cache:
                try:
                    raw = _lookup(data, ref)
                except KeyError:
                    raise ProfileError(f"{where(path)}: {'.'.join(path)} refers to {{{ref}}}, which is not in the profile{_suggest(ref, _all_keys(data))}.") from None
                if isinstance(raw, (dict, list)):
                    kind = "a mapping" if isinstance(raw, dict) else "a list"
                    raise ProfileError(f"{where(path)}: {'.'.join(path)} refers to {{{ref}}}, which is {kind}; "
                                       "a reference stands for one value.")
                cache[ref] = resolve(raw, tuple(ref.split(".")), stack + (ref,))
            return cache[ref]

        def piece(match: re.Match) -> str:
            found = target(match.group(1))
            if found is None:
                raise ProfileError(f"{where(path)}: {'.'.join(path)} = {value!r} refers to {{{match.group(1)}}}, "
                                   f"which is null; set {match.group(1)} or write the value out.")
            return str(found).lower() if isinstance(found, bool) else str(found)

        whole = _REF.fullmatch(value)
        if whole:
            found = target(whole.group(1))
            return spend(found, path) if isinstance(found, str) else found
        return spend(_REF.sub(piece, value), path)

    return resolve(data, (), ())


def _absolute_paths(data: dict, cwd: Path | None) -> None:
    """Relative paths are relative to the submit directory; jobs run elsewhere, so fix them now
    (without touching the filesystem: no symlink resolution)."""
    for key, value in (data.get("paths") or {}).items():
        if isinstance(value, str) and value and not value.startswith(("/", "{")):
            if cwd is None:
                try:
                    cwd = Path.cwd()
                except OSError as exc:
                    raise ProfileError(f"paths.{key} = {value!r} is relative, but the current directory is gone "
                                       f"({exc.strerror}); cd somewhere that exists or give absolute paths.") from None
            data["paths"][key] = os.path.normpath(os.path.join(cwd, value))


def _leaves(obj: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, path + (str(key),))
    elif isinstance(obj, list):
        for item in obj:
            yield from _leaves(item, path)
    else:
        yield path, obj


def _check_secrets(data: dict, where, env: Mapping[str, str]) -> None:
    """The secrets rule (cluster/secrets.py) over the whole merged profile, before any value is
    echoed in an error: no key named like a secret with a value (none at all in `env`), no command
    word passing a secret flag or `NAME=value`, no token-shaped value, and none of the values of the
    submitting environment's secrets. The message never quotes the value."""
    env_secrets = secret_env_values(env)
    for section, body in data.items():
        if section == "description":
            continue
        if is_secret_name(section):
            raise ProfileError(f"{where((section,))}: {section}: a secret never goes into a profile; {export_hint(section)}.")
        for dotted, why in find_secrets(body, env_secrets, section, allow_passthrough=section != "env"):
            path = tuple(re.sub(r"\[\d+\]", "", dotted).split("."))
            raise ProfileError(f"{where(path)}: {dotted}: {why}.")


def _check_leaves(data: dict, where) -> None:
    """Numbers are finite; text is one line of printable characters."""
    for path, value in _leaves(data):
        if path[:1] == ("description",):
            continue
        dotted = ".".join(path)
        if isinstance(value, float) and not math.isfinite(value):
            raise ProfileError(f"{where(path)}: {dotted} = {value}: not a finite number; give a real number.")
        if isinstance(value, str) and _CONTROL.search(value):
            char = _CONTROL.search(value).group()
            raise ProfileError(f"{where(path)}: {dotted} contains the control character {char!r}; values are one "
                               "line of printable text.")


def _check_required(data: dict, where) -> None:
    """The keys everything downstream relies on are set (not missing, not null, not empty)."""
    for dotted in REQUIRED:
        path = tuple(dotted.split("."))
        node: Any = data
        for depth, part in enumerate(path, 1):
            present = isinstance(node, dict) and part in node
            node = node.get(part) if isinstance(node, dict) else None
            if node is None or node == [] or node == {} and depth == len(path):
                state = "is not set" if not present else "is null" if node is None else "is empty"
                what = ".".join(path[:depth])
                needs = "" if depth == len(path) else f" but {dotted} is needed"
                raise ProfileError(f"{where(path[:depth])}: {what} {state}{needs}; every profile needs {dotted}: set it, "
                                   "or start the profile with `extends: base` (or smoke, full) to inherit it.")


def _has(data: dict, path: Path_) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def load_profile(name: str, sets: Iterable[str] = (), env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Profile:
    """Read, merge, override, validate and resolve a profile."""
    env = os.environ if env is None else env
    path = resolve_profile_path(name)
    origin: dict[Path_, str] = {}
    data = _load_chain(path, origin)
    data = apply_overrides(data, origin, env, sets)
    where = lambda p: Profile(name, path, data, origin).where(".".join(p))  # noqa: E731
    _check_secrets(data, where, env)
    _check_leaves(data, where)
    _validate(data, where)
    _check_required(data, where)  # before references: a missing section is named, not a dangling {ref}
    _absolute_paths(data, cwd)
    data = resolve_refs(data, where)
    _validate_stages(data.get("stages") or {}, where)  # resolved references get their types checked
    _check_required(data, where)
    return Profile(Path(name).stem if "/" in name else name, path, data, origin)
