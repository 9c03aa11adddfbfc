"""Issue 13, secrets: one rule for secret names (cluster/secrets.py), applied to env keys, profile
keys, slime flags and stage commands before anything is written. Every run below plants a secret
somewhere, runs a way of submitting, and then greps stdout, stderr and every file the run wrote
for the secret's value: zero hits, exit 2."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from cluster import sbatch_render, submit
from cluster.cli import run_cli
from cluster.errors import ConfigError
from cluster.secrets import (
    export_hint, find_secrets, is_secret_name, secret_flags, value_exposed, word_problem,
)
from cluster.profile.slime_args import render_flag
from cluster.profile.slime_flags import load_flag_table

from .helpers import ROOT, clean_env, recording_sbatch

SECRET = "s3cr3tPlanted9"  # short on purpose: no minimum length
TOKEN_SHAPED = "hf_" + "aB3" * 12  # a Hugging Face token's shape, under a harmless name
SEED_ENV = ("RUN_PROFILE", "HF_CHECKPOINT", "REF_LOAD", "SAVE_DIR", "PROMPT_DATA", "LOAD_CKPT",
            "WANDB_API_KEY", "WANDB_KEY", "HF_TOKEN")


# --- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "OPENAI_API_KEY", "NGC_API_KEY", "WANDB_KEY", "AWS_CREDENTIAL", "DB_PASSWORD",
    "wandb-key", "hf-token", "sglang-api-key", "sglang-admin-api-key", "router-api-key",
    "router-control-plane-api-keys", "router-oracle-password", "sglang-ssl-keyfile-password",
    "token", "key", "password", "apiKey", "wandbKey", "client_secret", "--token", "RAY_secret_token",
])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "CUDA_DEVICE_MAX_CONNECTIONS", "PYTHONPATH", "TOKENIZERS_PARALLELISM", "NCCL_NVLS_ENABLE",
    "HF_TOKEN_FILE", "HF_TOKEN_PATH", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "SSH_AUTH_SOCK",
    "input-key", "label-key", "reward-key", "eval-input-key", "metadata-key", "tool-key", "multimodal-keys",
    "router-client-key-path", "router-tls-key-path", "sglang-ssl-keyfile", "linear-key-head-dim",
    "fim-pad-token", "fim-eod-token", "sglang-bucket-time-to-first-token", "max-tokens-per-gpu",
    "rollout-stop-token-ids", "tokenizer-type", "log-passrate", "wandb-group", "",
])
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_the_secret_slime_flags_are_derived_from_the_pinned_list_by_the_one_rule():
    table = load_flag_table()
    names = [line.split("\t")[0] for line in (ROOT / "cluster" / "profile" / "slime_flags.txt").read_text().splitlines()
             if line.startswith("--")]
    flags = [n.lstrip("-") for entry in names for n in entry.split(",")]
    assert secret_flags(flags) == [
        "router-api-key", "router-control-plane-api-keys", "router-oracle-password", "sglang-admin-api-key",
        "sglang-api-key", "sglang-ssl-keyfile-password", "wandb-key"]
    for flag in secret_flags(flags):
        assert table.get(flag) is not None
        with pytest.raises(ConfigError, match=r"export [A-Z_]+ in the environment"):
            render_flag(flag, SECRET)
        assert render_flag(flag, None) == [] and render_flag(flag, False) == []


def test_the_hint_names_the_variable_slime_reads():
    assert export_hint("wandb-key").startswith("export WANDB_API_KEY ")  # slime's wandb.init reads it
    assert export_hint("--hf-token").startswith("export HF_TOKEN ")
    assert export_hint("--token").startswith("export HF_TOKEN ")  # huggingface-cli download --token
    assert export_hint("sglang-api-key").startswith("export SGLANG_API_KEY ")


@given(st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z][a-z0-9]{0,8}){0,4}", fullmatch=True))
def test_the_rule_does_not_care_how_a_name_is_spelled(name):
    # a flag, its argparse dest and its environment-variable spelling are one name
    assert is_secret_name(name) == is_secret_name(name.replace("-", "_")) == is_secret_name(name.replace("-", "_").upper())


def test_value_exposed_has_no_minimum_length_but_needs_a_whole_token():
    assert value_exposed("ab", "--note ab") and value_exposed("ab", "--x=ab") and value_exposed("ab", "/p/ab/q")
    assert not value_exposed("ab", "abc") and not value_exposed("ab", "cab") and not value_exposed("", "anything")


def test_find_secrets_never_quotes_the_value():
    data = {"env": {"HF_TOKEN": SECRET}, "cmd": ["x", f"--api-key={SECRET}", f"A_PASSWORD={SECRET}"],
            "group": TOKEN_SHAPED, "other": f"/data/{SECRET}/x"}
    found = list(find_secrets(data, {"WANDB_API_KEY": SECRET}))
    assert [w for w, _ in found] == ["env.HF_TOKEN", "cmd[1]", "cmd[2]", "group", "other"]
    assert all(SECRET not in why and TOKEN_SHAPED not in why for _, why in found)
    assert word_problem("--wandb-project") is None and word_problem("PYTHONPATH=/x") is None


def test_pass_through_container_env_is_not_a_secret():
    assert list(find_secrets({"env": {"HF_TOKEN": "", "WANDB_API_KEY": None, "X": "$HF_TOKEN"}})) == []
    assert [w for w, _ in find_secrets({"env": {"HF_TOKEN": ""}}, allow_passthrough=False)] == ["env.HF_TOKEN"]


# --- planting secrets and grepping everything a run produced -------------------------------------

PLANTS = {
    # id: (profile body after `extends: smoke`, --set list, extra environment)
    "profile-env": (f"env:\n  HF_TOKEN: {SECRET}\n", [], {}),
    "profile-env-empty-name": ("env:\n  WANDB_API_KEY: ''\n", [], {"WANDB_API_KEY": SECRET}),
    "set-env": ("", [f"env.HF_TOKEN={SECRET}"], {}),
    "set-bare-secret-flag": ("", [f"wandb-key={SECRET}"], {}),
    "set-dotted-secret-flag": ("", [f"sglang.router-api-key={SECRET}"], {}),
    "flag-wandb-key": (f"wandb:\n  wandb-key: {SECRET}\n", [], {}),
    "flag-sglang-api-key": (f"sglang:\n  sglang-api-key: {SECRET}\n", [], {}),
    "flag-password": (f"misc:\n  sglang-ssl-keyfile-password: {SECRET}\n", [], {}),
    "flag-list": (f"sglang:\n  router-control-plane-api-keys: [{SECRET}]\n", [], {}),
    "command-flag": ("stages:\n  model:\n    command: [huggingface-cli, download, Qwen/Qwen3-8B, --token, "
                     f"{SECRET}]\n", [], {}),
    "command-flag-equals": (f"stages:\n  model:\n    command: [huggingface-cli, download, x, --token={SECRET}]\n", [], {}),
    "command-assignment": (f"stages:\n  data:\n    command: [env, HF_TOKEN={SECRET}, python3, -m, holdem.data]\n", [], {}),
    "entrypoint-flag": (f"stages:\n  train:\n    entrypoint: [python3, train.py, --wandb-key, {SECRET}]\n", [], {}),
    "container-env": (f"container:\n  runtime: pyxis\n  image: img\n  env:\n    WANDB_API_KEY: {SECRET}\n", [], {}),
    "sbatch-export": (f"slurm:\n  extra:\n    export: ALL,HF_TOKEN={SECRET}\n", [], {}),
    "health-check": (f"ray:\n  health_check:\n    RAY_secret_token: {SECRET}\n", [], {}),
    "section-name": (f"password: {SECRET}\n", [], {}),
    "token-shaped-value": (f"wandb:\n  wandb-group: {TOKEN_SHAPED}\n", [], {}),
    "token-shaped-env-path": ("", [], {"SAVE_DIR": f"/ckpt/{TOKEN_SHAPED}"}),
    "env-value-in-profile": (f"wandb:\n  wandb-group: {SECRET}\n", [], {"WANDB_API_KEY": SECRET}),
    "env-value-in-set": ("", [f"wandb.wandb-group={SECRET}"], {"WANDB_API_KEY": SECRET}),
    "env-value-in-path": ("", [f"paths.save=/ckpt/{SECRET}/run"], {"HF_TOKEN": SECRET}),
}
MODES = ("dry-run", "dry-run-json", "emit-sbatch", "submit", "wrapper-job-script", "wrapper-launch-spec")


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A clean environment, a stand-in sbatch that records any call, and the cwd in tmp_path."""
    for var in SEED_ENV:
        monkeypatch.delenv(var, raising=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    recording_sbatch(bindir, tmp_path / "sbatch-calls")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _argv(mode: str, profile: str, sets: list[str], tmp: Path) -> tuple[object, list[str]]:
    common = ["--profile", profile, *(a for s in sets for a in ("--set", s)), "--set", f"paths.log_dir={tmp / 'logs'}"]
    if mode == "dry-run":
        return submit.main, [*common, "--dry-run"]
    if mode == "dry-run-json":
        return submit.main, [*common, "--dry-run", "--json"]
    if mode == "emit-sbatch":
        return submit.main, [*common, "--emit-sbatch", str(tmp / "emit")]
    if mode == "submit":
        return submit.main, [*common, "--set", f"paths.root={tmp / 'root'}"]
    if mode == "wrapper-job-script":
        return sbatch_render.main, ["job-script", "--stage", "train", *common]
    return sbatch_render.main, ["launch-spec", *common]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_secret_reaches_no_output_and_no_file(isolated, monkeypatch, plant, mode):
    body, sets, env = PLANTS[plant]
    for key, value in {**env, "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "1", "SLURM_GPUS_ON_NODE": "4"}.items():
        monkeypatch.setenv(key, value)
    profile = isolated / "planted.yaml"
    profile.write_text("extends: smoke\n" + body)
    before = _files(isolated)
    main, argv = _argv(mode, str(profile), sets, isolated)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(main, argv)
    written = {p: data for p, data in _files(isolated).items() if before.get(p) != data}
    planted = (TOKEN_SHAPED if "token-shaped" in plant else SECRET).encode()
    assert code == 2, (out.getvalue(), err.getvalue())
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1, err.getvalue()
    assert "internal error" not in err.getvalue()
    assert planted.decode() not in out.getvalue() + err.getvalue()
    assert [p for p, data in written.items() if planted in data] == []
    assert written == {}, sorted(written)  # refused before anything is written
    assert not (isolated / "sbatch-calls").exists()


@pytest.mark.parametrize("args", [
    ["--dry-run"], ["--dry-run", "--json"], ["--emit-sbatch", "EMIT"],
])
def test_end_to_end_a_secret_in_the_profile_env_is_refused_everywhere(tmp_path, args):
    """The real command line, as a user runs it (subprocess)."""
    profile = tmp_path / "p.yaml"
    profile.write_text(f"extends: smoke\nenv:\n  HF_TOKEN: {SECRET}\n")
    args = [str(tmp_path / "emit") if a == "EMIT" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", "--profile", str(profile), *args,
                           "--set", f"paths.log_dir={tmp_path / 'logs'}"],
                          capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "env.HF_TOKEN" in proc.stderr and "export HF_TOKEN" in proc.stderr and str(profile) in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p.yaml"]


def test_a_secret_in_the_environment_is_used_and_never_printed(isolated, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET + "2")
    for argv in (["--dry-run"], ["--dry-run", "--json"], ["--emit-sbatch", str(isolated / "emit")]):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = run_cli(submit.main, ["--profile", "smoke", "--set", f"paths.log_dir={isolated / 'logs'}", *argv])
        assert code == 0, err.getvalue()
        assert "--use-wandb" in out.getvalue() or "emit" in argv[0]  # wandb turns on from the environment
        assert SECRET not in out.getvalue() + err.getvalue()
    assert [p for p, data in _files(isolated).items() if SECRET.encode() in data] == []


def test_names_that_only_look_secret_pass(isolated):
    profile = isolated / "ok.yaml"
    profile.write_text("extends: smoke\nenv:\n  TOKENIZERS_PARALLELISM: 'false'\n  HF_TOKEN_PATH: /run/secrets/hf\n"
                       "container:\n  runtime: pyxis\n  image: img\n  env:\n    HF_TOKEN: ''\n    WANDB_API_KEY: null\n")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(submit.main, ["--profile", str(profile), "--dry-run", "--json"])
    assert code == 0, err.getvalue()
    assert '"HF_TOKEN": "$HF_TOKEN"' in out.getvalue()
