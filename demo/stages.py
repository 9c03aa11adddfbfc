"""STAND-INs for the demo chain's `model` and `convert` stages (named as such), the two stages
that need the network or GPUs, writing the real layouts so the plan's skip logic and the
launcher's resume logic see real structures.

    python -m demo.stages model HF_DIR       # instead of huggingface-cli download
    python -m demo.stages convert OUT_DIR    # instead of convert_hf_to_torch_dist.py

`model` first copies the real Qwen3 tokenizer files (tests/fixtures/qwen3_tokenizer) into HF_DIR,
so the rollout loads its tokenizer from `--hf-checkpoint` exactly as on a cluster. The tokenizer
goes in before config.json and the weights, which are what marks the dir complete: a stage killed
half-way is re-run, never skipped. Each stage prints the host and CUDA_VISIBLE_DEVICES it saw.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

from cluster.cli import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]
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


def write_model(target: Path) -> None:
    """The HF layout's marker files: config.json and a placeholder weights file."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "stand_in": True}))
    (target / "model.safetensors").write_bytes(b"stand-in weights")


def write_convert(target: Path) -> None:
    """The torch_dist layout of a converted model: release/ (placeholders), tracker `release`."""
    (target / "release").mkdir(parents=True, exist_ok=True)
    (target / "release" / "common.pt").write_bytes(b"stand-in")
    (target / "release" / ".metadata").write_bytes(b"stand-in")
    (target / "latest_checkpointed_iteration.txt").write_text("release")


def write_stage(stage: str, target: Path) -> None:
    print(f"stand-in {stage} on {socket.gethostname()} task {os.environ.get('SLURM_PROCID')} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
    if os.environ.get("SLURM_PROCID", "0") != "0":
        return  # multi-task stages (convert): rank 0 writes, like the real tool
    (write_model if stage == "model" else write_convert)(target)
    print(f"stand-in {stage} wrote {target}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m demo.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=sorted(WHY))
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    print(f"[demo] {args.stage}: {WHY[args.stage]}", flush=True)
    if args.stage == "model" and os.environ.get("SLURM_PROCID", "0") == "0":
        missing = [name for name in TOKENIZER_FILES if not (TOKENIZER / name).is_file()]
        if missing:
            print(f"error: demo model stage: {', '.join(missing)} not in {TOKENIZER}; the demo runs from a "
                  f"repository checkout (git clone), which ships the Qwen3 tokenizer files there", file=sys.stderr)
            return 2
        copy_tokenizer(args.target)
        print(f"[demo] model: copied the Qwen3 tokenizer ({', '.join(TOKENIZER_FILES)}) to {args.target}", flush=True)
    write_stage(args.stage, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
