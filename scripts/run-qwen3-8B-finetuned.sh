#!/bin/bash
# The seed's entry point, kept for people following its README. Runs the train stage on THIS
# machine (no Slurm) through the same launcher a Slurm job uses, as a one-node cluster:
#
#   RUN_PROFILE=smoke HF_CHECKPOINT=/root/Qwen3-8B REF_LOAD=/root/Qwen3-8B_torch_dist \
#   SAVE_DIR=/root/Qwen3-8B_slime PROMPT_DATA=/root/pokerbench/train.jsonl \
#   [LOAD_CKPT=...] [WANDB_KEY=...] bash scripts/run-qwen3-8B-finetuned.sh [--set KEY=VALUE ...]
#
# RUN_PROFILE: smoke (default) | full | a profile path. The paths are read by the profile loader
# from the environment. WANDB_KEY is handed on as WANDB_API_KEY in the environment only (never
# argv, never a file). HOLDEM_PYTHON: the interpreter (default python3).
# On exit or Ctrl-C it stops only what it started: the launcher (by PID), which in turn stops the
# Ray, SGLang and router processes it started. Everything else is Python's.

# Must run before anything bash-only: zsh and sh would misread the rest of this file.
if [ -n "${ZSH_VERSION:-}" ] || [ -z "${BASH_VERSION:-}" ]; then
  echo "error: $0 must run under bash, not zsh or sh (it relies on bash traps and arrays); run: bash $0" >&2
  exit 2
fi
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python="${HOLDEM_PYTHON:-python3}"
export RUN_PROFILE="${RUN_PROFILE:-smoke}"
if [ -n "${WANDB_KEY:-}" ]; then
  export WANDB_API_KEY="$WANDB_KEY"
fi
unset WANDB_KEY

# Load and check the profile for one node, write the launch spec (errors: one line, exit 2).
spec=$("$python" -m cluster.sbatch_render launch-spec --profile "$RUN_PROFILE" --nodes 1 "$@")

# A one-node Slurm identity for the launcher; the id is unique on this machine (PID-based).
host=$(hostname -s)
job_id=$(printf '9%07d' "$$")
export SLURM_JOB_ID="$job_id" SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0 \
  SLURM_JOB_NUM_NODES=1 SLURM_NNODES=1 SLURM_JOB_NODELIST="$host" SLURMD_NODENAME="$host" SLURM_RESTART_COUNT=0

launcher_pid=""
# shellcheck disable=SC2317  # called from the traps below
stop_launcher() {
  # Only our own child, by PID: it tears down the Ray processes it started on SIGTERM.
  if [ -n "$launcher_pid" ] && kill -0 "$launcher_pid" 2>/dev/null; then
    echo "stopping the launcher (pid $launcher_pid)" >&2
    kill -TERM "$launcher_pid" 2>/dev/null || true
    local deadline=$((SECONDS + ${HOLDEM_STOP_GRACE_S:-30}))
    while kill -0 "$launcher_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    if kill -0 "$launcher_pid" 2>/dev/null; then
      echo "launcher (pid $launcher_pid) still running after ${HOLDEM_STOP_GRACE_S:-30} s; killing it" >&2
      kill -KILL "$launcher_pid" 2>/dev/null || true
    fi
  fi
}
trap stop_launcher EXIT
trap 'stop_launcher; trap - EXIT; exit 130' INT
trap 'stop_launcher; trap - EXIT; exit 143' TERM

echo "launch spec: $spec (job id $SLURM_JOB_ID on $host)"
"$python" -m cluster.launch --spec "$spec" &
launcher_pid=$!
wait "$launcher_pid" && rc=0 || rc=$?  # INT/TERM end the script from their traps
launcher_pid=""
exit "$rc"
