"""cluster/stages/container.py: the profile's container section -> srun options / wrapped argv / env."""
from __future__ import annotations

import subprocess

import pytest

from cluster.stages.container import (
    ContainerSpec, Mount, describe, parse_mount, render_container, render_env_lines, srun_args, wrap_argv,
)
from cluster.errors import ConfigError
from cluster.profile import load_profile

ARGV = ["python3", "-m", "cluster.launch", "--spec", "/logs/c/train/launch.json"]


def test_default_profile_runs_without_a_container():
    spec = render_container(load_profile("smoke", env={}).section("container"))
    assert spec == ContainerSpec()
    assert not spec.enabled
    assert srun_args(spec) == [] and wrap_argv(spec, ARGV) == ARGV and render_env_lines(spec) == []


def test_none_ignores_an_image_and_leaves_the_step_alone():
    spec = render_container({"runtime": "none", "image": "x.sif", "mounts": ["/a:/b"]})
    assert wrap_argv(spec, ARGV) == ARGV and srun_args(spec) == []


def test_pyxis_renders_srun_options():
    spec = render_container({"runtime": "pyxis", "image": "nvcr.io#nvidia/pytorch:24.07-py3",
                             "mounts": ["/data:/data:ro", "/scratch:/ckpt"], "env": {"HF_HOME": "/data/hf"}})
    assert srun_args(spec) == ["--container-image=nvcr.io#nvidia/pytorch:24.07-py3",
                               "--container-mounts=/data:/data:ro,/scratch:/ckpt",
                               "--container-env=HF_HOME"]
    assert wrap_argv(spec, ARGV) == ARGV  # pyxis wraps through srun, not the command


def test_apptainer_wraps_the_command():
    spec = render_container({"runtime": "apptainer", "image": "/images/slime.sif",
                             "mounts": ["/data:/data:ro", "/work"]})
    assert wrap_argv(spec, ARGV) == ["apptainer", "exec", "--nv", "--bind", "/data:/data:ro,/work:/work",
                                     "/images/slime.sif", *ARGV]
    assert srun_args(spec) == []


def test_apptainer_without_mounts_has_no_bind():
    spec = render_container({"runtime": "apptainer", "image": "docker://slimerl/slime:latest"})
    assert wrap_argv(spec, ["true"]) == ["apptainer", "exec", "--nv", "docker://slimerl/slime:latest", "true"]


def test_env_values_are_exported_and_pass_through_names_only_referenced():
    spec = render_container({"runtime": "apptainer", "image": "/i.sif",
                             "env": {"HF_HOME": "/data/hf dir", "WANDB_API_KEY": ""}})
    lines = render_env_lines(spec)
    assert "export HF_HOME='/data/hf dir'" in lines
    assert 'export APPTAINERENV_HF_HOME="${HF_HOME}"' in lines
    assert 'export APPTAINERENV_WANDB_API_KEY="${WANDB_API_KEY}"' in lines
    assert any(line.startswith(': "${WANDB_API_KEY?') for line in lines)
    assert not any(line.startswith("export WANDB_API_KEY") for line in lines)


def test_env_lines_run_in_bash_and_take_the_secret_from_the_environment():
    spec = render_container({"runtime": "apptainer", "image": "/i.sif", "env": {"WANDB_API_KEY": None, "A": "1"}})
    script = "set -euo pipefail\n" + "\n".join(render_env_lines(spec)) + '\necho "$APPTAINERENV_WANDB_API_KEY $APPTAINERENV_A"\n'
    ok = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", "WANDB_API_KEY": "s3cret"},
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "s3cret 1"
    missing = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "container.env.WANDB_API_KEY" in missing.stderr and "export it" in missing.stderr


def test_to_dict_never_shows_a_pass_through_value():
    spec = render_container({"runtime": "pyxis", "image": "img", "env": {"HF_TOKEN": "", "X": "1"}})
    shown = describe(spec, ["cmd"])
    assert shown["env"] == {"HF_TOKEN": "$HF_TOKEN", "X": "1"}
    assert shown["srun_args"][0] == "--container-image=img" and shown["step"] == ["cmd"]
    assert shown["mounts"] == [] and shown["runtime"] == "pyxis"


@pytest.mark.parametrize("text,mount", [
    ("/data", Mount("/data", "/data")),
    ("/data:/mnt/data", Mount("/data", "/mnt/data")),
    ("/data:/mnt/data:ro", Mount("/data", "/mnt/data", "ro")),
    ("/data:/data:rw", Mount("/data", "/data", "rw")),
])
def test_mount_forms(text, mount):
    assert parse_mount(text) == mount


@pytest.mark.parametrize("text,why", [
    ("data:/data", "source 'data' must be an absolute path"),
    ("/data:data", "target 'data' must be an absolute path"),
    ("/data:/data:rx", "mode 'rx' is not one of ro, rw"),
    ("/a:/b:ro:x", "too many ':' parts"),
    ("/a,b:/c", "contains ',' or a space"),
    ("/a b:/c", "contains ',' or a space"),
    ("", "expected a string SRC:DST"),
    (42, "expected a string SRC:DST"),
    ("/a::ro", "target"),
])
def test_bad_mounts_are_one_line_errors(text, why):
    with pytest.raises(ConfigError) as err:
        render_container({"runtime": "pyxis", "image": "img", "mounts": ["/ok", text]})
    message = str(err.value)
    assert message.startswith("container.mounts[1]") and why in message and "\n" not in message


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer"])
@pytest.mark.parametrize("image", [None, "", "  "])
def test_image_missing_when_a_runtime_is_set(runtime, image):
    with pytest.raises(ConfigError, match=rf"container.image is not set but container.runtime = {runtime}"):
        render_container({"runtime": runtime, "image": image})


@pytest.mark.parametrize("section,why", [
    ({"runtime": "docker", "image": "x"}, "must be one of none, pyxis, apptainer"),
    ({"runtime": "pyxis", "image": "a b"}, "contains a space"),
    ({"runtime": "pyxis", "image": "x", "mounts": "/a:/b"}, "expected a list"),
    ({"runtime": "pyxis", "image": "x", "env": {"WANDB_API_KEY": "abc"}}, "looks like a secret"),
    ({"runtime": "pyxis", "image": "x", "env": {"HF_TOKEN": "abc"}}, "looks like a secret"),
    ({"runtime": "pyxis", "image": "x", "env": {"BAD-NAME": "1"}}, "not a valid environment variable name"),
])
def test_other_bad_sections(section, why):
    with pytest.raises(ConfigError, match=why):
        render_container(section)


def test_profile_validation_rejects_an_unknown_runtime(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("extends: smoke\ncontainer:\n  runtime: podman\n")
    with pytest.raises(ConfigError, match="container.runtime"):
        load_profile(str(profile), env={})


def test_a_profile_container_section_renders(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("extends: smoke\ncontainer:\n  runtime: pyxis\n  image: nvcr.io#nvidia/pytorch:24.07-py3\n"
                       "  mounts: [/data:/data:ro]\n  env: {HF_HOME: /data/hf, WANDB_API_KEY: null}\n")
    spec = render_container(load_profile(str(profile), env={}).section("container"))
    assert srun_args(spec) == ["--container-image=nvcr.io#nvidia/pytorch:24.07-py3", "--container-mounts=/data:/data:ro",
                               "--container-env=HF_HOME,WANDB_API_KEY"]
