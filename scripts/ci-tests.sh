#!/usr/bin/env bash
# ci-tests.sh — the project's one test command (README and .ci/run call exactly this).
#
#   scripts/ci-tests.sh [PYTEST ARGS...]
#
# Installs the project with its test extras, brings up the local Slurm cluster (3 nodes) with
# scripts/local-slurm.sh, runs `python -m pytest -q [ARGS]`, and tears the cluster down on exit
# (also on failure) if this run started it. Exit code: pytest's; "no tests collected" (5) counts
# as a failure; 3 if the cluster could not be started; 2 when not run as root (the local Slurm
# needs it). PYTHON overrides the interpreter.
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  how="bash $0${*:+ $*} from a root shell (this machine has no sudo)"
  command -v sudo >/dev/null 2>&1 && how="sudo bash $0${*:+ $*} (or the same from a root shell)"
  echo "error: ci-tests.sh needs root (scripts/local-slurm.sh starts Slurm in network namespaces); you are $(id -un). Run: $how" >&2
  exit 2
fi
PYTHON=${PYTHON:-python}
NODES=3

"$PYTHON" -m pip install -q -e '.[test]'

started=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if ((started)); then
    scripts/local-slurm.sh down || echo "error: scripts/local-slurm.sh down failed; see its output above" >&2
  fi
}
trap cleanup EXIT

# Already running (a developer's cluster): use it and leave it running.
if ! scripts/local-slurm.sh status >/dev/null 2>&1; then
  started=1
fi
scripts/local-slurm.sh up "$NODES"

rc=0
"$PYTHON" -m pytest -q "$@" || rc=$?
if ((rc == 5)); then
  echo "error: pytest collected no tests (exit 5); check the arguments: $*" >&2
fi
exit "$rc"
