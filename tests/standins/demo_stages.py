"""The demo chain's `model` and `convert` stages: stand-ins (named as such) for the two stages
that need the network or GPUs, writing the real layouts so the plan's skip logic and the
launcher's resume logic see real structures.

    python -m tests.standins.demo_stages model HF_DIR       # instead of huggingface-cli download
    python -m tests.standins.demo_stages convert OUT_DIR    # instead of convert_hf_to_torch_dist.py

Both hand the actual writing to tests/standins/stage_outputs.py; `model` first copies the real
Qwen3 tokenizer files (tests/fixtures/qwen3_tokenizer) into HF_DIR, so the rollout loads its
tokenizer from `--hf-checkpoint` exactly as on a cluster. The tokenizer goes in before
config.json and the weights, which are what marks the dir complete: a stage killed half-way is
re-run, never skipped.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "tests" / "fixtures" / "qwen3_tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
WHY = {
    "model": ("stand-in for `huggingface-cli download Qwen/Qwen3-8B` (16 GB from the Hugging Face hub, "
              "which the demo must not download): writes config.json, a placeholder weights file and the "
              "real Qwen3 tokenizer files in the HF layout"),
    "convert": ("stand-in for slime's tools/convert_hf_to_torch_dist.py (needs GPUs, torch and Megatron-LM): "
                "writes the torch_dist layout (latest_checkpointed_iteration.txt = release, release/.metadata) "
                "with placeholder contents"),
}


def copy_tokenizer(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        tmp = target / f".{name}.tmp"
        shutil.copyfile(TOKENIZER / name, tmp)
        os.replace(tmp, target / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.demo_stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=sorted(WHY))
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    print(f"[demo] {args.stage}: {WHY[args.stage]}", flush=True)
    if args.stage == "model" and os.environ.get("SLURM_PROCID", "0") == "0":
        copy_tokenizer(args.target)
        print(f"[demo] model: copied the Qwen3 tokenizer ({', '.join(TOKENIZER_FILES)}) to {args.target}", flush=True)
    argv_out = [sys.executable, "-m", "tests.standins.stage_outputs", args.stage, str(args.target)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(argv_out, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
