"""How cluster.slurm submits, on the real local Slurm: the job files written by its split of
submitit's submission (compared with submitit's own), the dependency filled into the script sbatch
reads on stdin, sbatch processes started ahead submitting nothing when a check fails, and an sbatch
that fails before it reads its script."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.integration.test_chain import standin_sets, submit
from tests.integration.conftest import pid_alive
from tests.unit.cluster.helpers import SEED_ENV, clean_env, standin_sbatch
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _normal(text: str, ids: dict[str, str], folder: Path) -> str:
    text = text.replace(str(folder), "<FOLDER>")
    for job_id, name in ids.items():
        text = text.replace(job_id, name)
    return re.sub(r"[0-9a-f]{32}", "<UUID>", text)


def _tree(folder: Path, ids: dict[str, str]) -> dict[str, str]:
    """relative path (ids and uuids normalised) -> 'link' | 'dir' | 'file'"""
    out = {}
    for path in folder.rglob("*"):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        out[_normal(str(path.relative_to(folder)), ids, folder)] = kind
    return out


def _in_process_plan(tmp_path: Path, monkeypatch, *sets: str):
    from cluster.submit import build_parser, make_plan

    for var in SEED_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["--profile", "smoke", "--nodes", "1"]
    for item in [*standin_sets(tmp_path), "slurm.extra.hold=true", *sets]:
        argv += ["--set", item]
    return build_parser().parse_args(argv), make_plan


def test_job_files_are_the_ones_submitit_writes(local_slurm, tmp_path, monkeypatch):
    import submitit

    from cluster.slurm import _stage_function, render_executor_params, submit_plan

    args, make_plan = _in_process_plan(tmp_path, monkeypatch)
    profile, plan = make_plan(args, strict_paths=True)
    data = next(s for s in plan.stages if s.name == "data")
    record = submit_plan(replace(plan, stages=(data,)), profile.data)
    ours_id = record["stages"][0]["job_id"]
    # submitit's own submission of the same stage, with the same parameters
    theirs_folder = tmp_path / "submitit" / "data"
    executor = submitit.SlurmExecutor(folder=theirs_folder / "%j", max_num_timeout=data.max_restarts)
    executor.update_parameters(**render_executor_params(data.slurm))
    theirs_id = str(executor.submit(_stage_function(data)).job_id)
    try:
        ours_folder = Path(plan.chain_dir) / "data"
        ours_tree = _tree(ours_folder, {ours_id: "<JOB>"})
        assert ours_tree == _tree(theirs_folder, {theirs_id: "<JOB>"})
        assert ours_tree == {".submission_file_<UUID>.sh": "link", "<JOB>": "dir",
                             "<JOB>/<JOB>_submission.sh": "file", "<JOB>/<JOB>_submitted.pkl": "file"}
        ours = ours_folder / ours_id
        theirs = theirs_folder / theirs_id
        assert _normal((ours / f"{ours_id}_submission.sh").read_text(), {ours_id: "<JOB>"}, ours_folder) == \
            _normal((theirs / f"{theirs_id}_submission.sh").read_text(), {theirs_id: "<JOB>"}, theirs_folder)
        a, b = (pickle.loads((d / f"{i}_submitted.pkl").read_bytes()) for d, i in ((ours, ours_id), (theirs, theirs_id)))
        assert type(a.function) is type(b.function) and vars(a.function) == vars(b.function)
        assert (a.args, a.kwargs, a._timeout_min, a._timeout_countdown) == (b.args, b.kwargs, b._timeout_min,
                                                                             b._timeout_countdown)
        # both jobs as Slurm holds them: the same script
        scripts = [local_slurm.run("scontrol", "write", "batch_script", i, "-").stdout for i in (ours_id, theirs_id)]
        assert _normal(scripts[0], {ours_id: "<JOB>"}, ours_folder) == _normal(scripts[1], {theirs_id: "<JOB>"},
                                                                              theirs_folder)
    finally:
        local_slurm.run("scancel", ours_id, theirs_id, check=False)


def test_each_stage_is_submitted_with_the_job_ids_it_waits_for_in_its_script(local_slurm, tmp_path):
    proc = submit(tmp_path, sets=standin_sets(tmp_path) + ["slurm.extra.hold=true"])
    assert proc.returncode == 0, proc.stderr
    chain = json.loads(proc.stdout)
    ids = {s["name"]: s["job_id"] for s in chain["stages"]}
    try:
        assert all(ids.values()) and len(set(ids.values())) == 3
        for name, waits_for in (("data", None), ("model", None), ("convert", ids["model"])):
            job_dir = Path(chain["chain_dir"]) / name
            text = (job_dir / ids[name] / f"{ids[name]}_submission.sh").read_text()
            shown = local_slurm.run("scontrol", "show", "job", "-o", ids[name]).stdout
            held = local_slurm.run("scontrol", "write", "batch_script", ids[name], "-").stdout
            assert held == text  # what sbatch read on stdin is the file kept beside the job
            if waits_for is None:
                assert "--dependency" not in text and "Dependency=(null)" in shown
            else:
                assert f"#SBATCH --dependency=afterok:{waits_for}\n" in text and "${" not in text
                assert f"Dependency=afterok:{waits_for}(unfulfilled)" in shown
            # nothing temporary left: the top of the stage folder holds submitit's link only
            assert [p.is_symlink() for p in job_dir.iterdir() if p.name != ids[name]] == [True]
    finally:
        local_slurm.run("scancel", *ids.values(), check=False)


def test_a_check_failing_after_sbatch_started_submits_nothing(local_slurm, tmp_path, monkeypatch):
    """cluster.submit starts sbatch for the first stages while it checks the profile; when a check
    fails, they get an empty script: no job reaches Slurm and no process is left."""
    from cluster import slurm, submit as submit_cli
    from cluster.errors import ConfigError

    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, argv, *a, **k):
            super().__init__(argv, *a, **k)
            started.append(self)

    monkeypatch.setattr(slurm.subprocess, "Popen", Recorded)
    before = int(local_slurm.sbatch("--hold", "--wrap", "true").split(";")[0])
    args, _ = _in_process_plan(tmp_path, monkeypatch, "slurm.nodes=abc")  # found while the profile loads
    with pytest.raises(Exception) as failure:
        submit_cli.submit_chain(args)
    after = int(local_slurm.sbatch("--hold", "--wrap", "true").split(";")[0])
    local_slurm.run("scancel", str(before), str(after), check=False)
    assert isinstance(failure.value, ConfigError) and "slurm.nodes = 'abc'" in str(failure.value)
    ahead = [p for p in started if p.args == ["sbatch"]]  # (the patch sees the probes' sbatch too)
    assert len(ahead) == 2  # really started before the check failed
    assert all(p.returncode == 1 for p in ahead)  # "Batch script is empty": each ended, and was reaped
    assert after == before + 1, f"jobs were submitted between the probes {before} and {after}"
    assert not any(pid_alive(p.pid) for p in ahead)


def test_sbatch_failing_before_it_reads_its_script_is_one_line(local_slurm, tmp_path):
    broken = tmp_path / "slurm.conf"  # sbatch stops at once on it (a missing file it retries for 60 s)
    broken.write_text("# not a cluster\n")
    env = clean_env(SLURM_CONF=str(broken))
    args = ["--profile", "smoke", "--nodes", "1", "--stages", "data,model,convert"]
    for item in standin_sets(tmp_path) + ["slurm.extra.hold=true"]:
        args += ["--set", item]
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: sbatch rejected stage data: ") and "Unable to process configuration file" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    record = json.loads(next((tmp_path / "logs").glob("*/chain.json")).read_text())
    assert record["submit_failed"] and not any(s["job_id"] for s in record["stages"])
    # no temporary job file left behind in any stage folder
    leftovers = [p for p in Path(record["chain_dir"]).rglob("*") if p.suffix in (".pkl", ".sh")]
    assert leftovers == []


def test_ctrl_c_while_sbatch_works_cancels_every_job_it_submitted(local_slurm, tmp_path):
    """A Ctrl-C at the terminal (SIGINT to the whole foreground process group) while model's
    sbatch is with Slurm: sbatch runs in its own session, so it finishes; cluster.submit waits for
    it, cancels every job that was submitted, records why, and exits 130 with one line."""
    real = shutil.which("sbatch")
    ready, go, ids = tmp_path / "ready", tmp_path / "go.fifo", tmp_path / "ids"
    os.mkfifo(go)
    bindir = tmp_path / "bin"
    standin_sbatch(bindir,  # in front of the real sbatch: holds model's job until the test says go
                   "set -o pipefail\nscript=$(cat)\n"
                   f'if [[ $script == *"--job-name=holdem-model"* ]]; then touch {ready}; read -r _ < {go}; fi\n'
                   f'printf "%s\\n" "$script" | {real} "$@" | tee -a {ids}\n')
    args = ["--profile", "smoke", "--nodes", "1", "--stages", "data,model,convert"]
    for item in standin_sets(tmp_path) + ["slurm.extra.hold=true"]:
        args += ["--set", item]
    env = clean_env(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "cluster.submit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def release() -> bool:  # the stand-in is reading the fifo once it exists as a reader
        try:
            fd = os.open(go, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            return False
        os.write(fd, b"go\n")
        os.close(fd)
        return True

    try:
        wait_for(ready.exists, "model's sbatch to get its script", 60, lambda: f"; cluster.submit: {proc.poll()}")
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the stand-in is in another session
        wait_for(release, "the stand-in sbatch to wait for the go", 30)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    submitted = re.findall(r"Submitted batch job (\d+)", ids.read_text())
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and err.startswith("interrupted: cancelled what was already submitted: ")
    assert len(submitted) == 2 and all(i in err for i in submitted), (submitted, err)
    record = json.loads(next((tmp_path / "logs").glob("*/chain.json")).read_text())
    assert record["submit_failed"] == "interrupted (Ctrl-C) while submitting"
    assert sorted(s["job_id"] for s in record["stages"] if s["job_id"]) == sorted(submitted)
    queued = local_slurm.run("squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i", "-j", ",".join(submitted),
                             check=False).stdout.split()
    assert queued == [], f"jobs left queued after Ctrl-C: {queued}"
