"""Regenerate cluster/profile/slime_flags.txt, the pinned list of flags slime's train.py accepts.

Run it where slime, Megatron-LM and SGLang import (e.g. the slimerl/slime image), at the slime
commit you pin:

    PYTHONPATH=<Megatron-LM>:<slime> python -m cluster.regen_slime_flags --slime-dir <slime> \\
        --commit "$(git -C <slime> rev-parse --short HEAD)" --out cluster/profile/slime_flags.txt

slime parses its command line in phases (a pre-parser, SGLang's tensor-parallel pre-parse, the
SGLang parser, the Megatron+slime main parser), each with parse_known_args. This records every
ArgumentParser that slime's `parse_args()` asks to parse, in order, and writes their options.
It cannot run on a machine without slime's dependencies: the file in the repository came from
slime 624b824 (v0.3.1).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

PHASES = ("pre", "sgl-tp", "sglang", "main")
HEADER = ("flags", "phase", "kind", "type", "nargs", "choices", "default")


def _type_name(action: argparse.Action) -> str:
    t = action.type
    return "None" if t is None else getattr(t, "__name__", type(t).__name__)


def render_rows(parsers: Iterable[tuple[str, argparse.ArgumentParser]]) -> list[str]:
    """One TSV row per option of each parser (help excluded), in the format slime_flags.py reads."""
    rows = []
    for phase, parser in parsers:
        for action in parser._actions:  # argparse keeps no public list of actions
            names = [s for s in action.option_strings if s.startswith("--")]
            if not names or isinstance(action, argparse._HelpAction):
                continue
            kind = "flag" if action.nargs == 0 else "value"
            choices = "|".join(str(c) for c in action.choices) if action.choices else ""
            rows.append("\t".join([",".join(names), phase, kind, _type_name(action), str(action.nargs), choices,
                                   repr(action.default)]))
    return rows


def capture_parsers(run) -> list[tuple[str, argparse.ArgumentParser]]:
    """Call `run()` (slime's parse_args) and record every parser it parses with, in order."""
    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self, args=None, namespace=None):
        if self not in seen:
            seen.append(self)
        return original(self, args, namespace)

    argparse.ArgumentParser.parse_known_args = recording
    try:
        run()
    except BaseException as exc:  # validation needs GPUs and files we do not have: the parsers are what we want
        sys.stderr.write(f"note: slime's parse_args stopped with {type(exc).__name__}: {exc}\n")
    finally:
        argparse.ArgumentParser.parse_known_args = original
    names = list(PHASES[: len(seen)]) + [f"phase{i}" for i in range(len(PHASES), len(seen))]
    return list(zip(names, seen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.regen_slime_flags", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slime-dir", required=True, help="the slime checkout (its train.py parses the flags)")
    parser.add_argument("--commit", required=True, help="the slime commit, recorded in the file's header")
    parser.add_argument("--versions", default="", help="e.g. 'Megatron-LM 1dcf0da, SGLang 0.5.15.post1'")
    parser.add_argument("--out", default=str(Path(__file__).parent / "profile" / "slime_flags.txt"))
    args = parser.parse_args(argv)
    sys.path.insert(0, args.slime_dir)
    sys.argv = [str(Path(args.slime_dir) / "train.py")]
    from slime.utils.arguments import parse_args  # only importable where slime is installed

    rows = render_rows(capture_parsers(parse_args))
    header = [f"# Flags accepted by slime train.py at THUDM/slime {args.commit}{', ' + args.versions if args.versions else ''}.",
              "# phase: pre|sgl-tp|sglang|main (sglang-phase parsers accept unique prefixes; the main parser does not). "
              "kind: flag (store_true/false) or value.", "\t".join(HEADER)]
    Path(args.out).write_text("\n".join(header + rows) + "\n")
    print(f"wrote {len(rows)} option entries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
