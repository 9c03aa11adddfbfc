"""The demo's data file, demo/pokerbench-demo.jsonl (not a stand-in: real PokerBench-format rows the
repo ships so the demo's `data` stage runs the real `holdem.data` without downloading PokerBench).

    python -m demo.data            # rewrite the shipped file (deterministic)
    python -m demo.data --check    # exit 1 if the shipped file differs

The six real rows (tests/fixtures/pokerbench/examples.jsonl, byte-exact) come first, then rows
from `holdem.rowgen` (random legal spots in the exact template; their labels are a random policy,
not solver output: fine for a demo of the machinery, never for training).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from cluster.cli import ArgumentParser
from holdem.rowgen import generate_rows

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "fixtures" / "pokerbench" / "examples.jsonl"  # the generator's input (a checkout)
DEMO_FILE = Path(__file__).resolve().parent / "pokerbench-demo.jsonl"
GENERATED_ROWS = 250
SEED = 2025


def render_demo_rows(generated: int = GENERATED_ROWS, seed: int = SEED) -> bytes:
    """The file's bytes: the real rows as they are, then `generated` rowgen rows."""
    real = EXAMPLES.read_bytes()
    if not real.endswith(b"\n"):
        real += b"\n"
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in generate_rows(generated, seed)]
    return real + "".join(lines).encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # a file shipped in the repo, readable by every user
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m demo.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args(argv)
    data = render_demo_rows()
    if args.check:
        same = DEMO_FILE.is_file() and DEMO_FILE.read_bytes() == data
        print(f"{DEMO_FILE}: {'up to date' if same else 'differs from what the generator writes'}")
        return 0 if same else 1
    DEMO_FILE.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(DEMO_FILE, data)
    rows = data.count(b"\n")
    print(f"wrote {rows} rows to {DEMO_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
