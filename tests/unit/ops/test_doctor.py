"""cluster/doctor.py and cluster/launcher/preflight.py: every finding, fed captured nvidia-smi output through an injected Probe."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Callable

import pytest

from cluster.profile.checks import scale_topology
from cluster.doctor import render_doctor_spec
from cluster.launcher.preflight import (
    CHECKS, DoctorSpec, GpuInfo, GpuReport, Probe, PythonEnv, blocking, check_disk, check_gpus, check_inputs,
    check_packages, check_sources, parse_nvidia_smi, probe_gpus, raise_on_blocking, run_doctor, visible_subset,
)
from cluster.errors import ConfigError
from cluster.profile import load_profile
from tests.unit.ops.conftest import ROOT, clean_env

# `nvidia-smi --query-gpu=index,uuid,name,compute_cap --format=csv,noheader`, as printed
A100x4 = """0, GPU-5d3c2a41-8f1e-6b7a-93c2-1f0e2d3c4b5a, NVIDIA A100-SXM4-80GB, 8.0
1, GPU-6e4d3b52-902f-7c8b-a4d3-2a1f3e4d5c6b, NVIDIA A100-SXM4-80GB, 8.0
2, GPU-7f5e4c63-a130-8d9c-b5e4-3b2a4f5e6d7c, NVIDIA A100-SXM4-80GB, 8.0
3, GPU-806f5d74-b241-9ead-c6f5-4c3b5a6f7e8d, NVIDIA A100-SXM4-80GB, 8.0
"""
V100x4 = A100x4.replace("NVIDIA A100-SXM4-80GB, 8.0", "Tesla V100-SXM2-32GB, 7.0")
P100x4 = A100x4.replace("NVIDIA A100-SXM4-80GB, 8.0", "Tesla P100-PCIE-16GB, 6.0")
T4x4 = A100x4.replace("NVIDIA A100-SXM4-80GB, 8.0", "Tesla T4, 7.5")
OLD_DRIVER_V100 = "0, GPU-5d3c2a41-8f1e-6b7a-93c2-1f0e2d3c4b5a, Tesla V100-SXM2-16GB\n"
NA_CAP = "0, GPU-5d3c2a41-8f1e-6b7a-93c2-1f0e2d3c4b5a, NVIDIA Mystery GPU, [N/A]\n"


def smi(text: str, env=None) -> GpuReport:
    return probe_gpus(env or {}, run=lambda argv: text)


def gpus_probe(text: str, **env: str) -> Probe:
    return Probe(env=env, gpus=lambda e: probe_gpus(e, run=lambda argv: text))


def env_with(found=lambda name: True, numpy="1.26.4") -> Callable:
    """A Probe.python_env answering as an interpreter whose modules are `found` (name -> bool)."""
    def answer(python, pythonpath, names, env):
        modules = {n: {"origin": f"/site/{n.replace('.', '/')}/__init__.py", "locations": [f"/site/{n}"]}
                   if found(n) else None for n in names}
        return PythonEnv(python, pythonpath, "/usr/bin/python3", "3.10.12", modules, {"numpy": numpy, "ray": "2.55.0"})
    return answer


def spec(**changes) -> DoctorSpec:
    base = DoctorSpec(gpus_per_node=4, slime_dir=None, megatron_dir=None, inputs={}, save=None)
    return replace(base, **changes)


def failed(findings):
    return [f for f in findings if not f.ok]


def test_parse_captured_nvidia_smi():
    gpus = parse_nvidia_smi(A100x4)
    assert [g.index for g in gpus] == ["0", "1", "2", "3"]
    assert gpus[0] == GpuInfo("0", "GPU-5d3c2a41-8f1e-6b7a-93c2-1f0e2d3c4b5a", "NVIDIA A100-SXM4-80GB", "8.0")


def test_capability_from_the_name_when_the_driver_is_old_or_says_na():
    assert parse_nvidia_smi(OLD_DRIVER_V100)[0].compute_cap == "7.0"
    assert parse_nvidia_smi(NA_CAP)[0].compute_cap is None


def test_four_a100_pass():
    findings = check_gpus(spec(), gpus_probe(A100x4))
    assert all(f.ok for f in findings) and len(findings) == 5
    assert findings[0].message == "4 GPU(s) visible via nvidia-smi, need 4"
    assert findings[1].line() == "ok: gpu0: GPU 0 (NVIDIA A100-SXM4-80GB): compute capability 8.0"


def test_t4_is_the_oldest_that_passes():
    assert all(f.ok for f in check_gpus(spec(), gpus_probe(T4x4)))


@pytest.mark.parametrize("text,cap", [(V100x4, "7.0"), (P100x4, "6.0"), (OLD_DRIVER_V100, "7.0")])
def test_v100_and_p100_are_refused_with_the_reason(text, cap):
    findings = check_gpus(spec(gpus_per_node=1), gpus_probe(text))
    bad = failed(findings)
    assert bad and all(f.blocking for f in bad)
    line = bad[0].line()
    assert line.startswith("error: gpu0:") and f"compute capability {cap} is below 7.5" in line
    assert "SGLang needs sm75 or newer" in line and "\n" not in line


def test_unknown_capability_is_a_warning_not_a_block():
    findings = check_gpus(spec(gpus_per_node=1), gpus_probe(NA_CAP))
    bad = failed(findings)
    assert len(bad) == 1 and not bad[0].blocking and bad[0].line().startswith("warning: gpu0:")
    assert blocking(findings) == []


def test_too_few_gpus():
    findings = check_gpus(spec(gpus_per_node=8), gpus_probe(A100x4))
    assert not findings[0].ok and "4 GPU(s) visible via nvidia-smi, need 8" in findings[0].message
    assert "--gpus-per-node=8" in findings[0].message


def test_cuda_visible_devices_limits_what_counts():
    findings = check_gpus(spec(), gpus_probe(A100x4, CUDA_VISIBLE_DEVICES="0,2"))
    assert "2 GPU(s) visible" in findings[0].message and not findings[0].ok
    assert [g.index for g in visible_subset(parse_nvidia_smi(A100x4), "GPU-806f5d74")] == ["3"]
    assert visible_subset(parse_nvidia_smi(A100x4), "-1") == []
    assert len(visible_subset(parse_nvidia_smi(A100x4), None)) == 4


def test_no_gpu_at_all():
    def missing(argv):
        raise FileNotFoundError(argv[0])

    probe = Probe(env={}, gpus=lambda e: probe_gpus(e, run=missing))
    (finding,) = check_gpus(spec(), probe)
    assert not finding.ok and finding.blocking
    assert finding.message.startswith("no GPU visible on this node (nvidia-smi not found); need 4.")


def test_nvidia_smi_failing_falls_back_to_cuda_visible_devices():
    def broken(argv):
        raise subprocess.CalledProcessError(9, argv, "", "NVIDIA-SMI has failed because it couldn't communicate with the driver")

    report = probe_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, run=broken)
    assert report.source in ("CUDA_VISIBLE_DEVICES", "/proc/driver/nvidia")
    if report.source == "CUDA_VISIBLE_DEVICES":  # this machine has no /proc/driver/nvidia
        assert len(report.gpus) == 4 and "couldn't communicate with the driver" in report.problem
        findings = check_gpus(spec(), Probe(env={}, gpus=lambda e: report))
        assert findings[0].ok and all(not f.blocking for f in findings[1:] if not f.ok)


def test_cpu_only_stage_needs_no_gpu():
    assert check_gpus(spec(gpus_per_node=0), gpus_probe(""))[0].ok


def test_packages_found_and_missing_with_the_fix():
    probe = Probe(env={}, python_env=env_with(lambda name: name == "ray"))
    findings = {f.check: f for f in check_packages(spec(), probe)}
    assert findings["package:ray"].ok and findings["python"].ok
    assert not findings["package:pybase64"].ok and "pip install pybase64" in findings["package:pybase64"].message
    assert not findings["package:sglang"].ok and "slimerl/slime image" in findings["package:sglang"].message
    for name, fix in (("pydantic", "pip install pydantic"), ("wandb", "pip install wandb"),
                      ("transformer_engine", "transformer_engine[pytorch]")):
        assert not findings[f"package:{name}"].ok and findings[f"package:{name}"].blocking
        assert fix in findings[f"package:{name}"].message
    assert not findings["package:flash_attn"].ok and not findings["package:flash_attn"].blocking
    assert not findings["package:apex"].ok and not findings["package:apex"].blocking


def test_the_python_is_asked_with_the_spec_interpreter_and_pythonpath():
    seen = []
    probe = Probe(env={"PATH": "/x"}, python_env=lambda *args: seen.append(args) or env_with()(*args))
    check_packages(spec(python="python3", pythonpath=("/m", "/s")), probe)
    python, pythonpath, names, env = seen[0]
    assert (python, pythonpath, env) == ("python3", ("/m", "/s"), {"PATH": "/x"})
    assert {"slime", "megatron.training", "transformer_engine", "numpy", "pydantic", "wandb"} <= set(names)
    check_packages(spec(), probe)
    assert seen[1][0] == sys.executable and seen[1][1] is None  # an old spec: this interpreter, this environment


def test_sources_present_and_missing(ready):
    found = check_sources(spec(slime_dir=str(ready.root / "slime"), megatron_dir=str(ready.root / "Megatron-LM")), Probe(env={}))
    assert all(f.ok for f in found)
    missing = check_sources(spec(slime_dir=str(ready.root / "nope"), megatron_dir=None), Probe(env={}))
    assert [f.check for f in failed(missing)] == ["slime", "megatron"]
    assert "train.py is missing" in missing[0].message and "THUDM/slime" in missing[0].message
    assert "paths.megatron_dir = None: not set" in missing[1].message


def test_sources_unreadable(ready):
    probe = Probe(env={}, readable=lambda path: False)
    bad = failed(check_sources(spec(slime_dir=str(ready.root / "slime"), megatron_dir=str(ready.root / "Megatron-LM")), probe))
    assert len(bad) == 2 and "is not readable" in bad[0].message


def test_inputs(ready, tmp_path):
    inputs = {"paths.hf-checkpoint": ready.env["HF_CHECKPOINT"], "paths.prompt-data": str(tmp_path / "none.jsonl"),
              "paths.ref-load": ready.env["REF_LOAD"]}
    probe = Probe(env={}, readable=lambda path: "torch_dist" not in path)
    findings = {f.check: f for f in check_inputs(spec(inputs=inputs), probe)}
    assert findings["path:paths.hf-checkpoint"].ok
    assert "does not exist" in findings["path:paths.prompt-data"].message
    assert "is not readable" in findings["path:paths.ref-load"].message


def test_disk(tmp_path):
    save = tmp_path / "not" / "yet" / "save"
    seen = []
    probe = Probe(env={}, disk_free=lambda path: seen.append(path) or 500e9, writable=lambda path: True)
    (ok,) = check_disk(spec(save=str(save)), probe)
    assert ok.ok and seen == [str(tmp_path)]  # the nearest existing parent
    (low,) = check_disk(spec(save=str(save), min_free_gb=1000), probe)
    assert not low.ok and "500.0 GB free" in low.message and "at least 1000 GB" in low.message
    (ro,) = check_disk(spec(save=str(save)), replace(probe, writable=lambda path: False))
    assert not ro.ok and "is not writable" in ro.message
    (unset,) = check_disk(spec(save=None), probe)
    assert not unset.ok and "paths.save is not set" in unset.message


def test_run_doctor_on_a_ready_profile(ready):
    profile = load_profile("smoke", sets=ready.sets, env=ready.env)
    probe = Probe(env={}, gpus=lambda e: smi(A100x4), python_env=env_with(), disk_free=lambda path: 10**12)
    findings = run_doctor(render_doctor_spec(profile), probe=probe)
    assert blocking(findings) == [], [f.line() for f in findings]
    checks = [f.check for f in findings]
    for name in ("gpus", "gpu0", "python", "import:slime", "import:megatron.training", "package:transformer_engine",
                 "package:numpy", "package:pydantic", "package:wandb", "package:pybase64", "package:ray",
                 "package:sglang", "package:flash_attn", "package:apex", "slime", "megatron",
                 "path:paths.hf-checkpoint", "path:paths.ref-load", "ref-load", "path:paths.prompt-data", "disk"):
        assert name in checks
    raise_on_blocking(findings)  # nothing to raise


def test_doctor_spec_follows_nodes_and_load_ckpt(ready):
    env = {**ready.env, "LOAD_CKPT": "/ckpt/x"}
    profile = scale_topology(load_profile("smoke", sets=ready.sets, env=env), 2, 8, env={})
    doc = render_doctor_spec(profile)
    assert doc.gpus_per_node == 8 and doc.inputs["paths.load"] == "/ckpt/x"
    assert DoctorSpec.from_dict(doc.to_dict()) == doc


def test_raise_on_blocking_is_one_line():
    probe = Probe(env={}, gpus=lambda e: smi(V100x4), python_env=env_with(lambda name: False),
                  disk_free=lambda path: 10**12, writable=lambda path: True)
    findings = run_doctor(spec(save="/tmp"), checks=(check_gpus, check_packages), probe=probe)
    with pytest.raises(ConfigError) as err:
        raise_on_blocking(findings, where="node n1")
    message = str(err.value)
    assert message.startswith("node n1: gpu0: GPU 0 (Tesla V100-SXM2-32GB): compute capability 7.0")
    assert "+12 more" in message and "\n" not in message  # 3 more GPUs, 2 imports, TE, numpy, 5 packages


def test_checks_are_selectable():
    assert run_doctor(spec(), checks=(), probe=Probe(env={})) == []
    assert len(CHECKS) == 7


def doctor_cli(*args: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.doctor", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def test_cli_on_this_gpu_less_machine_blocks_with_one_line_per_finding(ready):
    run = doctor_cli("--profile", "smoke", *(w for s in ready.sets for w in ("--set", s)), env=clean_env(**ready.env))
    assert run.returncode == 2
    errors = run.stderr.strip().splitlines()
    assert errors and all(line.startswith(("error: ", "warning: ")) for line in errors)
    assert any(line.startswith("error: gpus: no GPU visible") for line in errors)
    assert "ok: slime:" in run.stdout and "blocking" in run.stdout.splitlines()[-1]


def test_cli_exit_0_when_nothing_blocks(ready, capsys, monkeypatch):
    from cluster import doctor

    for key, value in ready.env.items():
        monkeypatch.setenv(key, value)
    probe = Probe(env={}, gpus=lambda e: smi(A100x4), python_env=env_with(), disk_free=lambda path: 10**12)
    code = doctor.main(["--profile", "smoke", *(w for s in ready.sets for w in ("--set", s))], probe=probe)
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    assert out.out.splitlines()[-1] == "all 25 checks passed"


def test_cli_json_for_scripts(ready, capsys, monkeypatch):
    from cluster import doctor

    for key, value in ready.env.items():
        monkeypatch.setenv(key, value)
    probe = Probe(env={}, gpus=lambda e: smi(A100x4), python_env=env_with(lambda n: n != "wandb", numpy="2.1.0"),
                  disk_free=lambda path: 10**12)
    code = doctor.main(["--profile", "smoke", "--json", *(w for s in ready.sets for w in ("--set", s))], probe=probe)
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and report["ok"] is False and report["blocking"] == 2
    bad = {f["check"]: f for f in report["findings"] if not f["ok"]}
    assert set(bad) == {"package:wandb", "package:numpy"}
    assert bad["package:numpy"]["severity"] == "error" and "numpy<2" in bad["package:numpy"]["message"]
    assert report["spec"]["pythonpath"] == [str(ready.root / "Megatron-LM"), str(ready.root / "slime"), str(ROOT)]


def test_cli_warns_that_a_container_image_is_not_this_host(ready, capsys, monkeypatch):
    from cluster import doctor

    for key, value in ready.env.items():
        monkeypatch.setenv(key, value)
    probe = Probe(env={}, gpus=lambda e: smi(A100x4), python_env=env_with(), disk_free=lambda path: 10**12)
    sets = [*ready.sets, "container.runtime=pyxis", "container.image=nvcr.io#nvidia/pytorch:24.07-py3"]
    code = doctor.main(["--profile", "smoke", *(w for s in sets for w in ("--set", s))], probe=probe)
    out = capsys.readouterr()
    assert code == 0 and out.out.splitlines()[-1] == "all 26 checks passed (1 warning(s))"
    assert "warning: container: the profile runs the stages in pyxis image nvcr.io#nvidia/pytorch:24.07-py3" in out.err
    assert "srun --container-image=nvcr.io#nvidia/pytorch:24.07-py3 python3 -m cluster.doctor" in out.err


@pytest.mark.parametrize("args,why", [([], "no profile"), (["--profile", "nope"], "unknown profile"),
                                      (["--profile", "smoke", "--set", "nokey=1"], "unknown key")])
def test_cli_bad_input(args, why):
    run = doctor_cli(*args, env=clean_env())
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error:") and why in run.stderr
