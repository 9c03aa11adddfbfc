"""Render a checked profile into the argument list after `train.py` (pure).

Keys of the slime-facing sections that are not ours (cluster/schema.OUR_KEYS) are slime flags, section by section in profile order:
`true` -> a bare flag, `false`/`null` -> nothing, a list -> its values as separate words,
ints exactly (`1000000`). Every name is checked against the pinned flag list again here, because
slime's own parser would silently drop an unknown one.
"""
from __future__ import annotations

from typing import Any

from cluster.errors import ConfigError
from cluster.profile import Profile
from cluster.profile.schema import OUR_KEYS, SLIME_SECTIONS
from cluster.secrets import export_hint, is_secret_name
from cluster.profile.slime_flags import load_flag_table

# Sections rendered only when their switch is on.
_SWITCHED = {"eval": "eval.enabled", "wandb": "wandb.use-wandb"}


def _word(value: Any) -> str:
    if isinstance(value, bool):  # a str-typed flag given a YAML boolean
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e15:
        return str(int(value))
    return str(value) if not isinstance(value, float) else repr(value)


def render_flag(name: str, value: Any) -> list[str]:
    """One profile entry -> its argv words."""
    flags = load_flag_table()
    info = flags.get(name)
    if info is None:
        hint = flags.closest(name)
        raise ConfigError(f"slime flag --{name} is not in the pinned list (cluster/profile/slime_flags.txt)"
                          f"{f'; did you mean --{hint}?' if hint else ''}. slime would silently ignore it.")
    if is_secret_name(name) and value is not None and value is not False:
        # never on argv: argv is visible in `ps`, chain.json and Ray's job table (cluster/secrets.py)
        raise ConfigError(f"--{name} would put a secret on the command line; remove it from the profile and "
                          f"{export_hint(name)}.")
    if value is None or value is False:
        return []
    if info.kind == "flag":
        return [f"--{info.name}"]
    values = value if isinstance(value, list) else [value]
    if not values:
        return []
    return [f"--{info.name}", *(_word(v) for v in values)]


def render_slime_args(profile: Profile, extra: dict[str, Any] | None = None) -> list[str]:
    """The exact argv after `train.py` for this profile (plus `extra` flags, e.g. --load)."""
    argv: list[str] = []
    seen: set[str] = set()
    for section in SLIME_SECTIONS:
        switch = _SWITCHED.get(section)
        if switch and not profile.get(switch):
            continue
        for key, value in profile.section(section).items():
            if f"{section}.{key}" in OUR_KEYS or section == "wandb" and key == "enabled":
                continue
            if key in seen:
                raise ConfigError(f"{profile.where(f'{section}.{key}')}: slime flag {key} is set in two sections; keep one.")
            seen.add(key)
            argv += render_flag(key, value)
    for key, value in (extra or {}).items():
        if key in seen:
            argv = _drop_flag(argv, key)
        argv += render_flag(key, value)
    return argv


def _drop_flag(argv: list[str], name: str) -> list[str]:
    out, skipping = [], False
    for word in argv:
        if word.startswith("--"):
            skipping = word == f"--{name}"
        if not skipping:
            out.append(word)
    return out


def render_model_args(profile: Profile) -> list[str]:
    """The model section alone (the convert stage needs the architecture, nothing else)."""
    argv: list[str] = []
    for key, value in profile.section("model").items():
        argv += render_flag(key, value)
    return argv
