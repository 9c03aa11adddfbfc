#!/usr/bin/env bash
# demo.sh — the newcomer's first run: the whole chain on a local 2-node Slurm, on CPU, in one command.
#
# Usage (as root, on a Debian/Ubuntu machine; no GPU needed; no sudo needed in a root shell):
#   bash scripts/demo.sh          (from a user account: sudo bash scripts/demo.sh)
#
# It installs the project (python3 -m pip install -e '.[all]'; into ./.venv when the system Python
# is externally managed), brings up the local Slurm (scripts/local-slurm.sh up 2, unless a cluster
# of 2 or more nodes already runs), submits the `demo` profile chain (profiles/demo.yaml:
# data -> model -> convert -> train over 2 nodes x 4 device-file GPUs), follows its logs, then
# prints the chain's status table and the rollout report. A second run skips the completed stages.
# Exit codes: 0 the chain completed, 1 it failed (or the deadline passed), 2 bad usage,
# 3 installation or cluster start failed.
#
# Environment (defaults in brackets):
#   DEMO_TIMEOUT_S  [900]           deadline for the whole demo, installation included
#   DEMO_WORK_DIR   [<repo>/demo-run] where data, checkpoints, the report and the chain logs go
#   DEMO_PYTHON     [python3]       the interpreter to install into and run with
#   DEMO_SETS       []              extra `--set KEY=VALUE` overrides, space-separated
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMEOUT_S=${DEMO_TIMEOUT_S:-900}
WORK=${DEMO_WORK_DIR:-$ROOT/demo-run}
PY=${DEMO_PYTHON:-python3}
DEADLINE=0
CHAIN_DIR=""

say() { echo "demo: $*"; }
die() { echo "error: $2" >&2; exit "$1"; }
within() { # within WHAT CMD...: run CMD with what is left of the deadline (exit 124 when it expires)
  local what=$1 n=$((DEADLINE - SECONDS))
  shift
  ((n > 0)) || { cancel_chain; die 1 "the demo's ${TIMEOUT_S} s deadline (DEMO_TIMEOUT_S) passed before: $what"; }
  timeout "$n" "$@"
}
chain_py() { "$PY" -c "import json, sys; chain = json.load(open(sys.argv[1] + '/chain.json')); $1" "$CHAIN_DIR"; }
cancel_chain() { # on Ctrl-C or the deadline: cancel this chain's own jobs, by id
  [[ -n $CHAIN_DIR && -f $CHAIN_DIR/chain.json ]] || return 0
  local ids
  ids=$(chain_py "print(' '.join(s['job_id'] for s in chain['stages'] if s.get('job_id')))")
  if [[ -n $ids ]]; then
    say "cancelling the chain's jobs: $ids"
    # shellcheck disable=SC2086  # a list of job ids
    scancel $ids || true
  fi
}
trap 'cancel_chain; exit 130' INT TERM

[[ $# -eq 0 ]] || die 2 "demo.sh takes no arguments (got: $*). Configure it with DEMO_* variables; see the top of $0."
if [[ $(id -u) -ne 0 ]]; then
  how="bash $0 from a root shell (this machine has no sudo)"
  command -v sudo >/dev/null 2>&1 && how="sudo bash $0 (or the same from a root shell)"
  die 2 "demo.sh needs root (it installs Slurm and creates network namespaces); you are $(id -un). Run: $how"
fi
[[ $TIMEOUT_S =~ ^[0-9]+$ ]] || die 2 "DEMO_TIMEOUT_S=$TIMEOUT_S is not a number of seconds."
DEADLINE=$((SECONDS + TIMEOUT_S))
cd "$ROOT"

# 1. Install. The system Python of Debian 12 / Ubuntu 23.04+ refuses pip (PEP 668): use a venv there.
externally_managed() {
  "$PY" -c 'import os, sys, sysconfig; sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'
}
if ! command -v "$PY" >/dev/null; then
  say "installing python3 (apt-get)"
  within "apt-get install python3" apt-get install -y -q python3 >/dev/null || die 3 "apt-get install python3 failed"
fi
if externally_managed || ! "$PY" -m pip --version >/dev/null 2>&1; then
  if [[ ! -x $ROOT/.venv/bin/python ]]; then
    say "the system Python is externally managed: creating $ROOT/.venv"
    "$PY" -m venv "$ROOT/.venv" 2>/dev/null || {
      within "apt-get install python3-venv" apt-get install -y -q python3-venv python3-pip >/dev/null ||
        die 3 "apt-get install python3-venv failed"
      "$PY" -m venv "$ROOT/.venv" || die 3 "python3 -m venv $ROOT/.venv failed"
    }
  fi
  PY=$ROOT/.venv/bin/python
fi
if "$PY" -c 'import cluster, holdem, ray, submitit, transformers, datasets, aiohttp, yaml' 2>/dev/null &&
   [[ $("$PY" -c 'import cluster, os; print(os.path.dirname(os.path.dirname(cluster.__file__)))') == "$ROOT" ]]; then
  say "project already installed for $PY"
else
  say "installing the project: $PY -m pip install -e '.[all]'"
  within "pip install" "$PY" -m pip install -q -e '.[all]' || die 3 "pip install -e '.[all]' failed (see above)"
fi

# 2. The local Slurm: keep a running cluster of >= 2 nodes (tests run one of 3), else start 2 nodes.
nodes_up=0
if status=$(bash scripts/local-slurm.sh status 2>/dev/null); then
  nodes_up=$(grep -c '^node ' <<<"$status" || true)
fi
if ((nodes_up >= 2)); then
  say "local Slurm already up with $nodes_up nodes"
else
  say "starting the local Slurm: scripts/local-slurm.sh up 2"
  within "scripts/local-slurm.sh up 2" bash scripts/local-slurm.sh up 2 || die 3 "scripts/local-slurm.sh up 2 failed (see above)"
fi

# 3. Submit. Relative paths of the profile are made absolute against the repository (cwd).
sets=(--set "paths.root=$WORK" --set "paths.log_dir=$WORK/logs")
for item in ${DEMO_SETS:-}; do sets+=(--set "$item"); done
t0=$SECONDS
submitted=$(within "cluster.submit" "$PY" -m cluster.submit --profile demo --nodes 2 "${sets[@]}" --json) ||
  die 1 "python -m cluster.submit --profile demo --nodes 2 failed (see above)"
CHAIN_DIR=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["chain_dir"])' <<<"$submitted")
say "submitted chain $(basename "$CHAIN_DIR"):"
chain_py "
for s in chain['stages']:
    print(f\"  {s['name']:8s} {'job ' + s['job_id'] if s.get('job_id') else 'skipped'}  ({s['reason']})\")"

# 4. Follow the logs until every job of the chain has ended.
say "following the logs: $PY -m cluster.logs $CHAIN_DIR -f"
rc=0
within "the chain's jobs to end" "$PY" -m cluster.logs "$CHAIN_DIR" -f || rc=$?
if ((rc == 124)); then
  cancel_chain
  die 1 "the demo chain did not finish within DEMO_TIMEOUT_S=${TIMEOUT_S} s (waited for its jobs to end; logs: $CHAIN_DIR)"
fi

# 5. The outcome: status table, report, exit code.
echo
"$PY" -m cluster.status "$CHAIN_DIR"
state=$("$PY" -m cluster.status "$CHAIN_DIR" --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["state"])')
save=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["profile_snapshot"]["paths"]["save"])' < "$CHAIN_DIR/chain.json")
echo
train_job=$(chain_py "print(next((s.get('job_id') or '') for s in chain['stages'] if s['name'] == 'train'))")
if [[ -f $save/report.json ]]; then
  say "rollout report: $save/report.json"
  "$PY" -m demo.report "$save/report.json" --job "$train_job" || true
fi
say "chain $(basename "$CHAIN_DIR"): $state in $((SECONDS - t0)) s (logs: $CHAIN_DIR)"
[[ $state == COMPLETED* ]] || die 1 "the demo chain did not complete: $state. Read the logs: $PY -m cluster.logs $CHAIN_DIR"
