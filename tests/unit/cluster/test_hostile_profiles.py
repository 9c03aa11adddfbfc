"""Issue 13, the profile side: every bad input to `python -m cluster.submit` is one `error:` line
naming what, where (file / --set / environment variable) and the fix, exit 2, nothing written,
no traceback, no hang. A table-driven corpus by category (files, YAML structure, values, --set,
environment, command line and file system), Hypothesis for the parsers, and valid controls."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cluster import submit
from cluster.cli import run_cli
from cluster.errors import ProfileError
from cluster.profile import MAX_DEPTH, MAX_NODES, load_profile, parse_set, parse_yaml

from .helpers import ROOT, SEED_ENV, clean_env, recording_sbatch

S = "extends: smoke\n"


def _alias_bomb() -> str:
    """A 'billion laughs' profile of about 430 bytes: 10 levels of 9 aliases each."""
    lines = [S, 'a0: &a0 ["lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _chain(n: int) -> str:
    return "env:\n" + "".join(f"  A{i}: \"{{env.A{i + 1}}}\"\n" for i in range(n)) + f"  A{n}: end\n"


def _expansion() -> str:
    big = "x" * 60_000
    return (f"env:\n  A: {big}\n  B: \"{'{env.A}' * 20}\"\n  C: \"{'{env.B}' * 20}\"\n")


# id -> (file bytes or text | None, extra args, fragments expected in the one error line)
# {P} in args stands for the profile's path, {T} for the test's tmp dir.
CASES: dict[str, tuple[bytes | str | None, list[str], list[str]]] = {
    # --- the file itself: presence, size, encoding ---------------------------------------------
    "file-empty": (b"", [], ["the profile is empty"]),
    "file-comment-only": (b"# nothing here\n", [], ["the profile is empty"]),
    "file-blank-lines": (b"\n\n   \n", [], ["the profile is empty"]),
    "file-latin-1": (b"extends: smoke\nslurm:\n  partition: caf\xe9\n", [], [":3:", "not UTF-8 (byte 0xe9)", "save the file as UTF-8"]),
    "file-bad-utf8-sequence": (b"extends: smoke\n\xc3\x28: 1\n", [], [":2:", "not UTF-8"]),
    "file-utf16-bom": ("extends: smoke\n".encode("utf-16"), [], ["UTF-16-encoded", "save it as UTF-8"]),
    "file-utf16-no-bom": ("extends: smoke\n".encode("utf-16-le"), [], ["NUL bytes"]),
    "file-utf32": ("extends: smoke\n".encode("utf-32"), [], ["UTF-32"]),
    "file-nul-byte": (b"extends: smoke\x00\n", [], ["NUL bytes"]),
    "file-binary": (bytes(range(256)) * 4, [], ["NUL bytes"]),
    "file-over-1mib": (b"# " + b"x" * (1 << 20) + b"\n", [], ["larger than 1 MiB"]),
    "file-control-char": (b"extends: smoke\nslurm:\n  partition: a\x07b\n", [], ["character", "not allowed"]),
    "file-top-level-list": ("- extends\n- smoke\n", [], ["must be a mapping of sections", "got a list"]),
    "file-top-level-scalar": ("smoke\n", [], ["must be a mapping of sections", "got a str"]),
    "file-unterminated-quote": (S + 'slurm:\n  partition: "gpu\n', [], ["YAML syntax error"]),
    "file-tab-indent": (S + "slurm:\n\tnodes: 1\n", [], ["YAML syntax error"]),
    # --- YAML structure -------------------------------------------------------------------------
    "yaml-alias-recursion": (S + "a: &a [*a]\n", [], [":2:", "alias *a is not allowed"]),
    "yaml-alias-bomb": (_alias_bomb(), [], ["alias *a0 is not allowed"]),
    "yaml-merge-alias": (S + "base: &b {nodes: 1}\nslurm:\n  <<: *b\n", [], ["alias *b is not allowed"]),
    "yaml-scalar-alias": (S + "slurm:\n  partition: &p gpu\n  qos: *p\n", [], ["alias *p"]),
    "yaml-undefined-alias": (S + "slurm:\n  qos: *nowhere\n", [], ["alias *nowhere"]),
    "yaml-deep-flow-5000": (S + "x: " + "[" * 5000 + "]" * 5000 + "\n", [], [f"nested more than {MAX_DEPTH} levels"]),
    "yaml-deep-block": (S + "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n", [], ["nested more than"]),
    "yaml-too-many-values": (S + "x: [" + "1," * (MAX_NODES + 10) + "1]\n", [], [f"more than {MAX_NODES} values"]),
    "yaml-duplicate-key": (S + "slurm:\n  nodes: 1\n  nodes: 2\n", [], [":4:3:", "duplicate key 'nodes' (first at line 3)"]),
    "yaml-duplicate-section": (S + "slurm:\n  nodes: 1\nslurm:\n  time: '1:00:00'\n", [], ["duplicate key 'slurm'"]),
    "yaml-duplicate-extends": (S + S, [], ["duplicate key 'extends'"]),
    "yaml-integer-key": (S + "1: x\n", [], [":2:1:", "the key 1 is not a string", "quote it"]),
    "yaml-null-key": (S + "~: x\n", [], ["the key None is not a string"]),
    "yaml-bool-key": (S + "true: x\n", [], ["the key True is not a string"]),
    "yaml-float-key": (S + "slurm:\n  1.5: x\n", [], ["the key 1.5 is not a string"]),
    "yaml-complex-key": (S + "? [a, b]\n: c\n", [], ["is not a string"]),
    "yaml-two-documents": (S + "---\nslurm: {}\n", [], ["second YAML document"]),
    "yaml-binary-tag": (S + "slurm:\n  partition: !!binary aGVsbG8=\n", [], ["tag:yaml.org,2002:binary is not allowed"]),
    "yaml-python-tag": (S + "x: !!python/object/apply:os.system ['true']\n", [], ["is not allowed in a profile"]),
    "yaml-set-tag": (S + "x: !!set {a, b}\n", [], ["tag:yaml.org,2002:set is not allowed"]),
    "yaml-timestamp-tag": (S + "slurm:\n  partition: !!timestamp 2024-01-01\n", [], ["timestamp is not allowed"]),
    "yaml-huge-int": (S + "slurm:\n  nodes: 1" + "0" * 5000 + "\n", [], ["not a whole number of at most 18 digits"]),
    "yaml-merge-key-plain": (S + "slurm:\n  <<: {nodes: 2}\n", [], ["unknown key slurm.<<"]),
    # an explicit type tag on a value that is not of the type (PyYAML itself raised KeyError / IndexError)
    "yaml-bool-tag-bad": (S + "slurm:\n  exclusive: !!bool maybe\n", [], [":3:14:", "'maybe' is not a valid bool"]),
    "yaml-float-tag-bad": (S + "algorithm:\n  lr: !!float abc\n", [], ["'abc' is not a valid float"]),
    "yaml-float-tag-empty": (S + "algorithm:\n  lr: !!float\n", [], ["'' is not a valid float"]),
    "yaml-map-tag-on-scalar": (S + "slurm: !!map x\n", [], ["expected a mapping node, but found scalar"]),
    "yaml-seq-tag-on-mapping": (S + "x: !!seq {a: 1}\n", [], ["expected a sequence node, but found mapping"]),
    "set-bool-tag-bad": (None, ["--set", "slurm.exclusive=!!bool ~"], ["--set slurm.exclusive", "is not a valid bool"]),
    # --- values -----------------------------------------------------------------------------------
    "value-time-word": (S + "slurm:\n  time: forever\n", [], ["slurm.time = 'forever'", "Slurm time limit"]),
    "value-time-zero": (S + "slurm:\n  time: 0\n", [], ["slurm.time = 0", "zero"]),
    "value-time-bool": (S + "slurm:\n  time: true\n", [], ["slurm.time = True", "Slurm time limit"]),
    "value-stage-time-bad": (S + "stages:\n  data:\n    slurm: {time: 2h}\n", [], ["stages.data.slurm.time = '2h'"]),
    "value-lr-nan": (S + "algorithm:\n  lr: .nan\n", [], ["algorithm.lr = nan: not a finite number"]),
    "value-lr-inf": (S + "algorithm:\n  lr: .inf\n", [], ["algorithm.lr = inf: not a finite number"]),
    "value-lr-minus-inf": (S + "algorithm:\n  lr: -.inf\n", [], ["algorithm.lr = -inf"]),
    "value-lr-nan-string": (S + "algorithm:\n  lr: \"nan\"\n", [], ["algorithm.lr = 'nan': not a finite number"]),
    "value-int-inf": (S + "rollout:\n  rollout-batch-size: .inf\n", [], ["not a finite number"]),
    "value-int-out-of-range": (S + "slurm:\n  nodes: 1e300\n", [], ["slurm.nodes = '1e300': out of range"]),
    "value-topology-null": (S + "topology: null\n", [], ["topology.actor-num-nodes is not set", "extends: base"]),
    "value-actor-nodes-null": (S + "topology:\n  actor-num-nodes: null\n", [], ["topology.actor-num-nodes is null"]),
    "value-log-dir-null": (S + "paths:\n  log_dir: null\n", [], ["paths.log_dir is null"]),
    "value-root-null": (S + "paths:\n  root: null\n", [], ["refers to {paths.root}, which is null", "set paths.root"]),
    "value-slurm-null": (S + "slurm: null\n", [], ["slurm.nodes is not set"]),
    "value-no-slurm-no-extends": ("topology: {}\n", [], ["slurm is not set but slurm.nodes is needed", "extends: base"]),
    "value-stages-null": (S + "stages: null\n", [], ["stages.data is not set but stages.data.command is needed"]),
    "value-empty-entrypoint": (S + "stages:\n  train:\n    entrypoint: []\n", [], ["stages.train.entrypoint is empty"]),
    "value-command-mapping-word": (S + "stages:\n  data:\n    command: [python3, {a: 1}]\n", [], ["each word must be a string"]),
    "value-newline-in-path": (S + "paths:\n  save: \"/a\\nb\"\n", [], ["paths.save contains the control character '\\n'"]),
    "value-nul-in-string": (S + "slurm:\n  partition: \"gpu\\0\"\n", [], ["slurm.partition contains the control character"]),
    "value-surrogate": (S + "slurm:\n  partition: \"\\ud800\"\n", [], [":3:", "YAML syntax error", "Unicode"]),
    "value-ref-to-mapping": (S + "paths:\n  save: \"{slurm.extra}\"\n", [], ["refers to {slurm.extra}, which is a mapping"]),
    "value-ref-cycle": (S + "paths:\n  save: \"{paths.load}\"\n  load: \"{paths.save}\"\n", [], ["reference cycle"]),
    "value-ref-chain": (S + _chain(40), [], ["references chained more than"]),
    "value-ref-expansion": (S + _expansion(), [], ["expand the profile beyond"]),
    "value-yes-is-not-a-switch": (S + "topology:\n  colocate: yes\n", [], ["topology.colocate = 'yes': is a switch"]),
    "value-extends-list": ("extends: [base]\n", [], ["extends must be a profile name"]),
    "value-extends-missing": ("extends: nowhere-profile\n", [], ["extends: unknown profile 'nowhere-profile'"]),
    "value-env-bad-name": (S + "env:\n  A-B: x\n", [], ["env.A-B: the key must be an environment variable name"]),
    "value-env-list": (S + "env:\n  A: [1]\n", [], ["env.A must be a plain value"]),
    "value-section-list": (S + "slurm: [1]\n", [], ["section slurm must be a mapping"]),
    "value-unknown-section": (S + "slurmm: {}\n", [], ["unknown section slurmm (did you mean slurm?)"]),
    "value-list-for-int": (S + "rollout:\n  rollout-batch-size: [1, 2]\n", [], ["expected a single value"]),
    # --- --set ------------------------------------------------------------------------------------
    "set-no-equals": (None, ["--set", "rollout-batch-size"], ["expected KEY=VALUE"]),
    "set-empty-key": (None, ["--set", "=3"], ["expected KEY=VALUE"]),
    "set-key-with-space": (None, ["--set", "slurm partition=gpu"], ["KEY must be a slime flag name or a dotted path"]),
    "set-key-empty-part": (None, ["--set", "slurm..nodes=1"], ["KEY must be"]),
    "set-key-too-deep": (None, ["--set", ".".join(["a"] * 40) + "=1"], ["KEY must be"]),
    "set-alias": (None, ["--set", "slurm.partition=*a"], ["--set slurm.partition", "alias *a"]),
    "set-alias-recursion": (None, ["--set", "env.X=&a [*a]"], ["--set env.X", "alias *a"]),
    "set-deep": (None, ["--set", "env.X=" + "[" * 3000 + "]" * 3000], ["--set env.X", "nested more than"]),
    "set-yaml-error": (None, ["--set", "slurm.partition=[gpu"], ["--set slurm.partition: YAML syntax error", "Quote the value"]),
    "set-two-documents": (None, ["--set", "slurm.partition=a\n---\nb"], ["second YAML document"]),
    "set-duplicate-keys": (None, ["--set", "slurm.extra={a: 1, a: 2}"], ["duplicate key 'a'"]),
    "set-nan": (None, ["--set", "lr=.nan"], ["--set lr", "not a finite number"]),
    "set-inf-exponent": (None, ["--set", "lr=1.0e+999"], ["not a finite number"]),
    "set-value-too-long": (None, ["--set", "slurm.partition=" + "g" * 70_000], ["longer than 64 KiB"]),
    "set-non-string-key": (None, ["--set", "slurm.extra={1: 2}"], ["the key 1 is not a string"]),
    "set-binary-tag": (None, ["--set", "slurm.partition=!!binary aGk="], ["is not allowed in a profile"]),
    "set-section-scalar": (None, ["--set", "slurm=5"], ["section slurm must be a mapping"]),
    "set-under-a-scalar": (None, ["--set", "slurm.nodes.x=1"], ["slurm.nodes", "expected an integer"]),
    "set-extends": (None, ["--set", "extends=full"], ["--set extends", "read from the profile files only"]),
    "set-huge-int": (None, ["--set", "slurm.nodes=" + "9" * 30], ["at most 18 digits"]),
    "set-control-char": (None, ["--set", 'slurm.partition="a\\tb"'], ["--set slurm.partition", "control character"]),
    "set-time-garbage": (None, ["--set", "slurm.time=soon"], ["--set slurm.time", "Slurm time limit"]),
    "set-env-list": (None, ["--set", "env.HF_HOME=[1]"], ["env.HF_HOME must be a plain value"]),
    "set-topology-null": (None, ["--set", "topology=null"], ["--set topology", "topology.actor-num-nodes is not set"]),
    "set-stage-null": (None, ["--set", "stages.data=null"], ["stages.data must be a mapping"]),
    "set-null-required": (None, ["--set", "slurm.gpus_per_node=null"], ["slurm.gpus_per_node = None: must be set"]),
    # --- command line -----------------------------------------------------------------------------
    "cli-stages-empty": (None, ["--stages", ",,,"], ["--stages"]),
    "cli-nodes-zero": (None, ["--nodes", "0"], ["--nodes 0: must be a positive integer"]),
    "cli-profile-is-a-dir": (None, ["--profile", "{T}"], ["unknown profile"]),
    "cli-profile-empty-name": (None, ["--profile", ""], ["no profile"]),
    "cli-profile-name-too-long": (None, ["--profile", "p" * 5000], ["cannot look at the profile (File name too long)"]),
    "cli-emit-under-a-file": (None, ["--emit-sbatch", "{P}/out"], ["is not a directory; nothing was written"]),
    "cli-emit-empty": (None, ["--emit-sbatch", ""], ["--emit-sbatch needs a directory"]),
    "cli-emit-into-proc": (None, ["--emit-sbatch", "/proc/holdem-out"], ["cannot write in /proc", "nothing was written"]),
    "cli-emit-log-dir-under-a-file": (None, ["--emit-sbatch", "{T}/emit", "--set", "paths.log_dir={P}/logs"],
                                      ["the chain's log dir", "is not a directory; nothing was written", "paths.log_dir"]),
}


def _write(tmp: Path, content: bytes | str | None) -> Path:
    path = tmp / "hostile.yaml"
    if content is None:
        path.write_text(S)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def clean(monkeypatch, tmp_path):
    for var in (*SEED_ENV, "WANDB_KEY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_inprocess(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(submit.main, argv)
    return code, out.getvalue(), err.getvalue()


def assert_clean_error(code: int, out: str, err: str, fragments: list[str], where: str | None) -> None:
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err  # exactly one line
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    if where:
        assert where in err, (where, err)
    assert out == ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_one_clean_error(clean, case):
    content, extra, fragments = CASES[case]
    path = _write(clean, content)
    extra = [a.replace("{P}", str(path)).replace("{T}", str(clean)) for a in extra]
    argv = ["--profile", str(path), *extra]
    if "--profile" in extra:
        argv = extra
    if "--emit-sbatch" not in extra:
        argv.append("--dry-run")
    before = _files(clean)
    start = time.monotonic()
    code, out, err = run_inprocess(argv)
    assert time.monotonic() - start < 10, "must not hang"
    where = str(path) if case.startswith(("file-", "yaml-")) else "--set " if case.startswith("set-") and "--set" in err[:20] else None
    assert_clean_error(code, out, err, fragments, where)
    assert _files(clean) == before, "nothing written"


@pytest.mark.parametrize("case", ["yaml-alias-bomb", "yaml-deep-flow-5000", "yaml-too-many-values", "file-over-1mib",
                                  "value-ref-expansion", "set-deep", "file-utf16-bom", "value-topology-null"])
def test_resource_bombs_end_fast_in_a_real_process(tmp_path, case):
    """Subprocess with a timeout: bombs that used to take 60-100 s and 3 GB, or hang."""
    content, extra, fragments = CASES[case]
    path = _write(tmp_path, content)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", "--profile", str(path), *extra, "--dry-run"],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=30)
    assert time.monotonic() - start < 15
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr, fragments, None)


# --- environment variables ------------------------------------------------------------------------

@pytest.mark.parametrize("var, value, fragments", [
    ("HF_CHECKPOINT", "/data/a\nb", ["environment HF_CHECKPOINT", "paths.hf-checkpoint contains the control character"]),
    ("SAVE_DIR", "/x\x1b[31m", ["environment SAVE_DIR", "control character"]),
    ("RUN_PROFILE", "no-such-profile", ["unknown profile 'no-such-profile'"]),
])
def test_hostile_environment(clean, monkeypatch, var, value, fragments):
    monkeypatch.setenv(var, value)
    argv = ["--dry-run"] if var == "RUN_PROFILE" else ["--profile", "smoke", "--dry-run"]
    assert_clean_error(*run_inprocess(argv), fragments, None)


# --- file system: unwritable targets, nothing half-written, non-root users -------------------------

def test_emit_into_an_unwritable_log_dir_creates_nothing(clean):
    blocker = clean / "file"
    blocker.write_text("x")
    code, out, err = run_inprocess(["--profile", "smoke", "--emit-sbatch", str(clean / "emit" / "deep"),
                                    "--set", f"paths.log_dir={blocker}/logs"])
    assert_clean_error(code, out, err, ["nothing was written", "--set paths.log_dir"], None)
    assert sorted(p.name for p in clean.iterdir()) == ["file"]  # the emit dir was not even created


def test_a_write_that_fails_halfway_is_rolled_back(clean, monkeypatch):
    """Disk full on the third file: the emit dir and the chain dir are removed again."""
    from cluster import sbatch_render

    calls = []
    real = sbatch_render.write_atomic

    def flaky(path, text):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(sbatch_render, "write_atomic", flaky)
    existing = clean / "emit"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, out, err = run_inprocess(["--profile", "smoke", "--emit-sbatch", str(existing / "new"),
                                    "--set", f"paths.log_dir={clean / 'logs'}"])
    assert_clean_error(code, out, err, ["No space left on device", "nothing is left half-written"], None)
    assert len(calls) == 3
    assert sorted(str(p.relative_to(clean)) for p in clean.rglob("*")) == ["emit", "emit/keep.txt"]


def test_emit_into_an_existing_dir_rolls_back_only_new_files(clean, monkeypatch):
    from cluster import sbatch_render

    out_dir = clean / "emit"
    out_dir.mkdir()
    (out_dir / "old.sbatch").write_text("old")
    real = sbatch_render.write_atomic
    calls = []

    def flaky(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path, text)

    monkeypatch.setattr(sbatch_render, "write_atomic", flaky)
    code, out, err = run_inprocess(["--profile", "smoke", "--emit-sbatch", str(out_dir),
                                    "--set", f"paths.log_dir={clean / 'logs'}"])
    assert code == 2 and "Input/output error" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["old.sbatch"] and not (clean / "logs").exists()


def test_a_real_submission_with_an_unwritable_log_dir_submits_nothing(clean, monkeypatch):
    bindir = clean / "bin"
    bindir.mkdir()
    recording_sbatch(bindir, clean / "sbatch-calls")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    blocker = clean / "file"
    blocker.write_text("x")
    from tests.unit.ops.conftest import make_ready  # every input exists, so only the log dir is wrong

    ready = make_ready(clean / "ready")
    for key, value in ready.env.items():
        monkeypatch.setenv(key, value)
    sets = [a for s in ready.sets if not s.startswith("paths.log_dir=") for a in ("--set", s)]
    code, out, err = run_inprocess(["--profile", "smoke", *sets, "--set", f"paths.log_dir={blocker}/logs"])
    assert_clean_error(code, out, err, ["the chain's log dir", "nothing was written"], None)
    assert not (clean / "sbatch-calls").exists()


def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.fixture
def world_dir():
    """A directory outside pytest's private tmp (0700 for root), readable by everyone."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="holdem-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_dry_run_by_a_non_root_user_under_an_unenterable_dir(world_dir):
    """Really runs as user nobody (setpriv): `Path.is_file` raised PermissionError here."""
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("needs root and setpriv to switch to a non-root user")
    locked = world_dir / "locked"
    locked.mkdir(mode=0o700)
    (locked / "p.yaml").write_text(S)
    env = {**clean_env(), "HOME": str(world_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([*prefix, sys.executable, "-m", "cluster.submit", "--profile", str(locked / "p.yaml"),
                           "--dry-run"], capture_output=True, text=True, env=env, cwd=world_dir, timeout=60)
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr,
                       ["cannot look at the profile (Permission denied)", "permissions"], str(locked / "p.yaml"))
    # the profile's own paths under that directory: the dry-run warns (as for a missing path), no traceback
    proc = subprocess.run([*prefix, sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--dry-run",
                           "--set", f"paths.root={locked}/run"], capture_output=True, text=True, env=env,
                          cwd=world_dir, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "" and f"warning: stage convert needs paths.slime_dir = {locked}" in proc.stdout
    proc = subprocess.run([*prefix, sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--stages", "train",
                           "--set", f"paths.root={locked}/run"], capture_output=True, text=True, env=env,
                          cwd=world_dir, timeout=60)
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr, ["stage train reads paths.prompt-data"], None)
    # and an unwritable --emit-sbatch target for that user: nothing created anywhere
    (world_dir / "p.yaml").write_text(S)
    root_owned = world_dir / "root-owned"
    root_owned.mkdir(mode=0o755)
    proc = subprocess.run([*prefix, sys.executable, "-m", "cluster.submit", "--profile", str(world_dir / "p.yaml"),
                           "--emit-sbatch", str(root_owned / "out"), "--set", f"paths.log_dir={world_dir / 'logs'}"],
                          capture_output=True, text=True, env=env, cwd=world_dir, timeout=60)
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr, ["cannot write in", "Permission denied",
                                                                   "nothing was written"], None)
    assert list(root_owned.iterdir()) == [] and not (world_dir / "logs").exists()


def test_extends_chain_too_long_and_symlink_loop(clean):
    for i in range(30):
        (clean / f"p{i}.yaml").write_text(f"extends: p{i + 1}\n" if i < 29 else S)
    assert_clean_error(*run_inprocess(["--profile", str(clean / "p0.yaml"), "--dry-run"]),
                       ["more than 16 profiles in the extends: chain"], None)
    loop = clean / "loop.yaml"
    loop.symlink_to(loop)
    assert_clean_error(*run_inprocess(["--profile", str(loop), "--dry-run"]), ["unknown profile"], None)
    (clean / "child.yaml").write_text(f"extends: {loop}\n")
    assert_clean_error(*run_inprocess(["--profile", str(clean / "child.yaml"), "--dry-run"]),
                       ["child.yaml: extends: unknown profile"], None)


def test_profile_is_a_fifo_and_does_not_block(clean):
    fifo = clean / "fifo.yaml"
    os.mkfifo(fifo)
    assert_clean_error(*run_inprocess(["--profile", str(fifo), "--dry-run"]), ["unknown profile"], None)


def test_a_relative_log_dir_when_the_current_dir_is_gone(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
            "from cluster.cli import run_cli; from cluster.submit import main; "
            "sys.exit(run_cli(main, ['--profile', 'smoke', '--dry-run']))")
    proc = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr, ["the current directory is gone"], None)


def test_stdout_closed_early_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m cluster.submit --profile smoke --dry-run --json | head -c 10",
                          shell=True, capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=60)
    assert proc.stdout == '{\n  "profi' and proc.stderr == ""


# --- valid controls: the rules do not get in the way ------------------------------------------------

@pytest.mark.parametrize("body, key, expected", [
    ("slurm:\n  time: 24:00:00\n", "slurm.time", "24:00:00"),  # unquoted: YAML 1.1 read 86400 (60 days)
    ("slurm:\n  time: 90\n", "slurm.time", "90"),  # minutes
    ("stages:\n  data:\n    slurm: {time: 1:30:00}\n", "stages.data.slurm.time", "1:30:00"),
    ("slurm:\n  account: 0755\n", "slurm.account", "0755"),  # not octal 493
    ("slurm:\n  partition: no\n", "slurm.partition", "no"),  # not false
    ("wandb:\n  wandb-group: 2024-01-01\n", "wandb.wandb-group", "2024-01-01"),  # not a date
    ("slurm:\n  nodes: 01\n", "slurm.nodes", 1),
    ("model:\n  rotary-base: 1e6\n", "model.rotary-base", 1000000),
    ("env:\n  TOKENIZERS_PARALLELISM: 'false'\n", "env.TOKENIZERS_PARALLELISM", "false"),
])
def test_valid_values_load_as_written(write_profile, body, key, expected):
    path = write_profile("ok", S + body)
    assert load_profile(str(path), env={}).get(key) == expected


def test_unquoted_time_renders_as_written(clean):
    path = _write(clean, S + "slurm:\n  time: 24:00:00\n")
    code, out, err = run_inprocess(["--profile", str(path), "--dry-run", "--json"])
    assert code == 0, err
    train = next(s for s in json.loads(out)["stages"] if s["name"] == "train")
    assert train["slurm"]["time"] == "24:00:00"


@pytest.mark.parametrize("profile", ["smoke", "full", "demo"])
def test_shipped_profiles_still_pass(clean, profile):
    code, out, err = run_inprocess(["--profile", profile, "--dry-run", "--json"])
    assert code == 0 and err == "", err
    json.loads(out)


def test_a_utf8_bom_is_fine(clean):
    path = clean / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + S.encode())
    code, out, err = run_inprocess(["--profile", str(path), "--dry-run"])
    assert code == 0, err


def test_set_values_are_yaml_scalars():
    assert parse_set("slurm.time=24:00:00") == ("slurm.time", "24:00:00")
    assert parse_set("x=[1, 2]") == ("x", [1, 2])
    assert parse_set("x=") == ("x", None)
    assert parse_set("x=a=b") == ("x", "a=b")
    assert parse_set("slurm.partition=gpu:a100") == ("slurm.partition", "gpu:a100")


# --- Hypothesis: the parsers never raise anything but ProfileError, and never hang ----------------

JSON_TYPES = (str, int, float, bool, type(None), list, dict)


def _plain(value, depth=0) -> bool:
    assert depth <= MAX_DEPTH + 1
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return isinstance(value, JSON_TYPES)


yaml_ish = st.text(alphabet=st.sampled_from(list("ab01:-[]{}&*!|>'\"#,.?~ \n\t%@`\\=<") + ["\x00", "\x85", "é", "\ud800"]),
                   max_size=80)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_ish)
def test_parse_yaml_returns_plain_values_or_one_line_profile_error(text):
    try:
        value = parse_yaml(text, "fuzz")
    except ProfileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz")
        return
    assert _plain(value)


@settings(max_examples=300, deadline=2000)
@given(st.text(max_size=40).filter(lambda k: "=" not in k), yaml_ish)
def test_parse_set_never_raises_anything_else(key, value):
    try:
        k, v = parse_set(f"{key}={value}")
    except ProfileError as exc:
        assert "\n" not in str(exc)
        return
    assert k == key.strip() and _plain(v)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=yaml_ish, sets=st.lists(st.tuples(st.sampled_from(["slurm.time", "lr", "env.X", "paths.root", "slurm.nodes",
                                                                "topology", "stages.train.entrypoint", "rollout-batch-size"]),
                                               yaml_ish), max_size=3))
def test_load_profile_never_raises_anything_else(tmp_path_factory, body, sets):
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(S + body, encoding="utf-8", errors="surrogatepass")
    try:
        profile = load_profile(str(path), sets=[f"{k}={v}" for k, v in sets], env={})
    except ProfileError as exc:
        assert "\n" not in str(exc)
        return
    for _, value in _leaves(profile.data):
        assert not (isinstance(value, float) and not math.isfinite(value))


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, path)
    else:
        yield path, obj


# --- the CLI wrapper: one line, never a traceback -------------------------------------------------

@pytest.mark.parametrize("exc, code, line", [
    (ProfileError("two\nlines"), 2, "error: two lines\n"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), 3,
     "error: /x/y: Permission denied (while writing or reading a file).\n"),
    (KeyError("slurm"), 3, "error: internal error KeyError: 'slurm'."),
    (RecursionError("maximum recursion depth exceeded"), 3, "error: internal error RecursionError"),
])
def test_run_cli_turns_every_exception_into_one_line(monkeypatch, exc, code, line):
    monkeypatch.delenv("HOLDEM_DEBUG", raising=False)

    def main(argv):
        raise exc

    err = io.StringIO()
    with redirect_stderr(err):
        assert run_cli(main, []) == code
    assert err.getvalue().startswith(line) and err.getvalue().count("\n") == 1
