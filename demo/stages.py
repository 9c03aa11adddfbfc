"""STAND-INs for the demo chain's `model` and `convert` stages (named as such), the two stages
that need the network or GPUs, writing the real layouts so the plan's skip logic and the
launcher's resume logic see real structures.

    python -m demo.stages model HF_DIR       # instead of hf download
    python -m demo.stages convert OUT_DIR    # instead of convert_hf_to_torch_dist.py
    python -m demo.stages export OUT_DIR --checkpoint ITER_DIR --origin-hf-dir HF_DIR
                                             # instead of convert_torch_dist_to_hf.py (the eval stage)

`model` first copies the real Qwen3 tokenizer files (demo/qwen3_tokenizer, shipped with the demo) into HF_DIR,
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

TOKENIZER = Path(__file__).resolve().parent / "qwen3_tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
WHY = {
    "model": ("stand-in for `hf download Stardust00/poker-qwen3-8b-merged` (16 GB from the Hugging Face hub, "
              "which the demo must not download): writes config.json, a placeholder weights file and the "
              "real Qwen3 tokenizer files in the HF layout"),
    "convert": ("stand-in for slime's tools/convert_hf_to_torch_dist.py (needs GPUs, torch and Megatron-LM): "
                "writes the torch_dist layout (latest_checkpointed_iteration.txt = release, release/metadata.json) "
                "with placeholder contents"),
    "export": ("stand-in for slime's tools/convert_torch_dist_to_hf.py (needs torch and the real weights): writes "
               "the HF layout (config.json marked as the trained policy, placeholder weights, the tokenizer copied "
               "from --origin-hf-dir) that the SGLang stand-in serves with the demo's scripted policy"),
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
    (target / "release" / "metadata.json").write_text(  # last, as Megatron writes it
        json.dumps({"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                    "common_backend": "torch", "common_backend_version": 1}))
    (target / "latest_checkpointed_iteration.txt").write_text("release")


def write_export(target: Path, checkpoint: Path | None, origin: Path | None) -> int:
    """The HF layout of an exported checkpoint; config.json says it is the trained policy (the
    SGLang stand-in then plays the demo's scripted policy, the starting model a passive one)."""
    if checkpoint is None or not checkpoint.is_dir():
        print(f"error: demo export: --checkpoint {checkpoint} is not a checkpoint dir", file=sys.stderr)
        return 2
    source = origin if origin is not None and all((origin / n).is_file() for n in TOKENIZER_FILES) else TOKENIZER
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)
    (target / "model.safetensors").write_bytes(b"stand-in weights")
    (target / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "stand_in": True,
                                                    "demo_policy": "trained", "exported_from": str(checkpoint)}))
    print(f"stand-in export wrote {target} from {checkpoint}", flush=True)
    return 0


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
    parser.add_argument("--checkpoint", type=Path, help="export: the Megatron iter dir being exported")
    parser.add_argument("--origin-hf-dir", type=Path, help="export: the starting HF dir (tokenizer, config)")
    args = parser.parse_args(argv)
    if args.stage == "export":
        print(f"[demo] export: {WHY['export']}", flush=True)
        return write_export(args.target, args.checkpoint, args.origin_hf_dir)
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
