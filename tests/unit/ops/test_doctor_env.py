"""The doctor's Python checks against fake package trees: a real interpreter asked with a real
find_spec over the PYTHONPATH the plan renders for the train stage (issue 17). Every fake module
raises when imported, so a passing check also proves that nothing was imported.

The fake interpreter is this Python without its site-packages (`-S`) whose "site" is a temp dir:
what the tree holds is exactly what the stage would find."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cluster.doctor import render_doctor_spec
from cluster.launcher.preflight import Probe, blocking, check_packages, check_ref_load, probe_python_env
from cluster.profile import load_profile
from cluster.stages.env import PROJECT_ROOT, stage_env
from tests.unit.ops.conftest import clean_env, write_exe

SITE_PACKAGES = ("transformer_engine", "pydantic", "wandb", "numpy", "flash_attn", "apex", "pybase64", "ray", "sglang")


@dataclass(frozen=True)
class Tree:
    root: Path
    python: Path  # the fake interpreter
    site: Path  # its site-packages
    slime_dir: Path
    megatron_dir: Path

    def spec(self, *sets: str):
        profile = load_profile("smoke", env={}, sets=[
            f"paths.root={self.root}", f"paths.slime_dir={self.slime_dir}", f"paths.megatron_dir={self.megatron_dir}",
            f"stages.train.entrypoint={json.dumps([str(self.python), 'train.py'])}", *sets])
        return render_doctor_spec(profile)


def module(base: Path, dotted: str) -> None:
    """A package that refuses to be imported (the doctor must only find it)."""
    path = base.joinpath(*dotted.split("."))
    path.mkdir(parents=True, exist_ok=True)
    (path / "__init__.py").write_text(f"raise SystemExit('the doctor imported {dotted}')\n")


def numpy_version(site: Path, version: str) -> None:
    for old in site.glob("numpy-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"numpy-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: numpy\nVersion: {version}\n")


@pytest.fixture
def tree(tmp_path) -> Tree:
    root = tmp_path / "t"
    site, slime_dir, megatron_dir = root / "site", root / "slime", root / "Megatron-LM"
    for name in SITE_PACKAGES:
        module(site, name)
    numpy_version(site, "1.26.4")
    module(slime_dir, "slime")
    module(slime_dir, "slime.rollout")
    (slime_dir / "train.py").write_text("# stand-in\n")
    module(megatron_dir, "megatron")  # the parent package must not run either
    module(megatron_dir, "megatron.training")
    python = write_exe(root / "bin" / "python3", f'#!/bin/sh\nexport PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site}"\n'
                                                 f'exec {sys.executable} -S "$@"\n')
    return Tree(root, python, site, slime_dir, megatron_dir)


def findings(spec) -> dict:
    return {f.check: f for f in check_packages(spec, Probe(env=clean_env()))}


def test_the_rendered_pythonpath_is_what_the_train_stage_gets(tree):
    spec = tree.spec()
    assert spec.python == str(tree.python)
    assert spec.pythonpath == (str(tree.megatron_dir), str(tree.slime_dir), str(PROJECT_ROOT))
    profile = load_profile("smoke", env={}, sets=[f"paths.slime_dir={tree.slime_dir}", f"paths.megatron_dir={tree.megatron_dir}"])
    assert ":".join(spec.pythonpath) == stage_env(profile, "train")["PYTHONPATH"]


def test_a_complete_tree_passes_without_importing_anything(tree):
    found = findings(tree.spec())
    assert [f.line() for f in found.values() if not f.ok] == []
    assert found["import:slime"].message == f"`import slime` resolves to {tree.slime_dir}/slime/__init__.py"
    assert str(tree.megatron_dir / "megatron" / "training") in found["import:megatron.training"].message
    assert found["package:numpy"].message == "numpy 1.26.4 (slime needs 1.x)"
    assert found["python"].message.startswith(f"{tree.python} (")


@pytest.mark.parametrize("piece, check, fix", [
    ("slime_dir/slime", "import:slime", "git clone https://github.com/THUDM/slime"),
    ("megatron_dir/megatron/training", "import:megatron.training", "megatron-core wheel alone has no megatron.training"),
    ("site/transformer_engine", "package:transformer_engine", "pip install --no-build-isolation 'transformer_engine[pytorch]'"),
    ("site/pydantic", "package:pydantic", "pip install pydantic (Megatron's megatron.training imports it)"),
    ("site/wandb", "package:wandb", "pip install wandb (slime imports it even with W&B off)"),
    ("site/numpy", "package:numpy", "pip install 'numpy<2'"),
    ("site/pybase64", "package:pybase64", "pip install pybase64"),
    ("site/ray", "package:ray", "pip install 'ray[default]'"),
    ("site/sglang", "package:sglang", "slimerl/slime image"),
])
def test_each_missing_piece_blocks_with_its_fix(tree, piece, check, fix):
    base, _, rest = piece.partition("/")
    shutil.rmtree(getattr(tree, base) / rest)
    found = findings(tree.spec())
    bad = [f for f in found.values() if not f.ok]
    assert [f.check for f in bad] == [check], [f.line() for f in bad]
    assert bad[0].blocking and fix in bad[0].message and "\n" not in bad[0].line()


def test_numpy_2_blocks(tree):
    numpy_version(tree.site, "2.1.3")
    bad = [f for f in findings(tree.spec()).values() if not f.ok]
    assert [f.check for f in bad] == ["package:numpy"] and bad[0].blocking
    assert "numpy 2.1.3 is installed" in bad[0].message and "slime asserts numpy 1.x" in bad[0].message


@pytest.mark.parametrize("name", ["flash_attn", "apex"])
def test_flash_attn_and_apex_only_warn(tree, name):
    shutil.rmtree(tree.site / name)
    found = findings(tree.spec())
    bad = [f for f in found.values() if not f.ok]
    assert [f.check for f in bad] == [f"package:{name}"] and not bad[0].blocking
    assert bad[0].line().startswith(f"warning: package:{name}:")


def test_flash_attn_is_not_asked_for_without_the_flash_backend(tree):
    shutil.rmtree(tree.site / "flash_attn")
    found = findings(tree.spec("misc.attention-backend=auto"))
    assert "package:flash_attn" not in found and all(f.ok for f in found.values())


def test_transformer_impl_local_is_no_way_out_for_qwen3(tree):
    found = findings(tree.spec("misc.transformer-impl=local"))
    te = found["package:transformer_engine"]
    assert not te.ok and not te.blocking and "Qwen3 loader knows only Transformer Engine's parameter names" in te.message


def test_slime_off_pythonpath_when_the_container_says_installed(tree):
    spec = tree.spec("container.slime_installed=true")
    assert str(tree.slime_dir) not in spec.pythonpath
    bad = [f for f in findings(spec).values() if not f.ok]
    assert [f.check for f in bad] == ["import:slime"]
    assert "container.slime_installed is true" in bad[0].message and "set container.slime_installed: false" in bad[0].message


def test_the_unrelated_pypi_slime_is_named(tree):
    shutil.rmtree(tree.slime_dir / "slime" / "rollout")
    bad = [f for f in findings(tree.spec()).values() if not f.ok]
    assert [f.check for f in bad] == ["import:slime"] and not bad[0].blocking
    assert "unrelated statistics library" in bad[0].message


def test_a_missing_interpreter_is_one_blocking_finding(tree):
    spec = replace(tree.spec(), python="no-such-python-xyz")
    (only,) = check_packages(spec, Probe(env=clean_env()))
    assert only.check == "python" and only.blocking and "`no-such-python-xyz` is not on PATH" in only.message


def test_the_probe_reports_an_interpreter_that_breaks(tmp_path):
    broken = write_exe(tmp_path / "python3", "#!/bin/sh\necho 'boom: no such library' >&2\nexit 7\n")
    env = probe_python_env(str(broken), (), ["json"], env=clean_env())
    assert env.problem and "boom: no such library" in env.problem


def test_the_probe_drops_the_cwd_and_keeps_only_the_given_pythonpath(tree, tmp_path, monkeypatch):
    (tmp_path / "only_in_cwd").mkdir()
    (tmp_path / "only_in_cwd" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    env = probe_python_env(str(tree.python), (str(tree.slime_dir),), ["slime", "only_in_cwd", "megatron"],
                           env=clean_env(PYTHONPATH=str(tree.megatron_dir)))
    assert env.found("slime") and not env.found("only_in_cwd") and not env.found("megatron")


# --- ref-load: the checkpoint completeness rule (cluster.outputs.check_megatron_dir) ------------

def converted(path: Path) -> Path:
    """What slime's converter leaves (SLIME.md, "Checkpoints on disk")."""
    release = path / "release"
    release.mkdir(parents=True)
    for name in ("common.pt", "__0_0.distcp", ".metadata"):
        (release / name).write_bytes(b"x")
    (release / "metadata.json").write_text('{"sharded_backend": "torch_dist"}')
    (path / "latest_checkpointed_iteration.txt").write_text("release")
    return path


def test_ref_load_must_hold_a_complete_checkpoint(tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = replace(tree.spec(), inputs={"paths.ref-load": str(empty)})
    (bad,) = check_ref_load(spec, Probe(env={}))
    assert not bad.ok and bad.blocking and "holds no complete checkpoint" in bad.message
    assert "--stages convert" in bad.message
    (good,) = check_ref_load(replace(spec, inputs={"paths.ref-load": str(converted(tmp_path / "ref"))}), Probe(env={}))
    assert good.ok, good.line()
    assert check_ref_load(replace(spec, inputs={"paths.ref-load": str(tmp_path / "none")}), Probe(env={})) == []
    assert blocking([bad]) == [bad]
