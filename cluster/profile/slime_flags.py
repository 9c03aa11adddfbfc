"""The pinned list of flags slime's train.py accepts (cluster/profile/slime_flags.txt).

slime parses with parse_known_args and silently drops unknown flags, so checking every rendered
name against this list is the only guard against a typo reaching a GPU job. Regenerate the file
with scripts/regen-slime-flags.py from a slime checkout; its first comment line names the commit.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FLAGS_FILE = Path(__file__).with_name("slime_flags.txt")


@dataclass(frozen=True)
class FlagInfo:
    name: str  # canonical name without dashes, e.g. "rollout-batch-size"
    kind: str  # "flag" (store_true/false, rendered bare) or "value"
    type: str  # python type name from argparse: int, float, str, None, ...
    nargs: str  # "None" (one value), "0", "+", "*", "?", or a number
    choices: tuple[str, ...]
    phase: str

    @property
    def is_list(self) -> bool:
        return self.nargs in ("+", "*") or self.nargs.isdigit() and int(self.nargs) > 1


@dataclass(frozen=True)
class FlagTable:
    source: str  # the header line naming the slime commit
    flags: dict[str, FlagInfo]  # every name and alias -> info of its canonical entry

    def get(self, name: str) -> FlagInfo | None:
        return self.flags.get(name)

    def closest(self, name: str) -> str | None:
        match = difflib.get_close_matches(name, self.flags.keys(), n=1, cutoff=0.6)
        return match[0] if match else None


def _choices(raw: str) -> tuple[str, ...]:
    # enum-typed flags list choices as "AttnBackend.flash"; argparse takes the bare member name.
    return tuple(c.rsplit(".", 1)[-1] for c in raw.split("|") if c)


@lru_cache(maxsize=None)
def load_flag_table(path: str | None = None) -> FlagTable:
    """Read the pinned flag list; the first entry for a name wins (the main parser comes last
    only for a few sglang-phase duplicates, whose kind and type agree)."""
    text = Path(path or FLAGS_FILE).read_text(encoding="utf-8")
    header = next((line[2:] for line in text.splitlines() if line.startswith("# Flags")), "")
    flags: dict[str, FlagInfo] = {}
    for line in text.splitlines():
        if not line.startswith("--"):
            continue
        cols = line.split("\t")
        names, phase, kind, type_, nargs, choices = (cols + [""] * 7)[:6]
        canonical = names.split(",")[0].lstrip("-")
        info = FlagInfo(canonical, kind, type_, nargs, _choices(choices), phase)
        for alias in names.split(","):
            flags.setdefault(alias.lstrip("-"), info)
    return FlagTable(header, flags)
