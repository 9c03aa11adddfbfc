"""cluster.slurm.SbatchPool's process handling, with stand-in `sbatch` programs on PATH (shell
scripts named as stand-ins; the real sbatch is exercised in tests/integration/test_submission.py):
scripts larger than a pipe, a process that ends before reading its script, spare processes that
get an empty script, and the dependency line filled into a rendered script."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.errors import SlurmError
from cluster.slurm import SbatchPool, _final_script

from .helpers import standin_sbatch


def _standin(tmp_path: Path, monkeypatch, body: str) -> None:
    standin_sbatch(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")


def _drain(pool: SbatchPool) -> list:
    ended = []
    while pool.running:
        ended += pool.finished(block=True)
    return ended


def test_a_script_larger_than_a_pipe_reaches_sbatch_whole(tmp_path, monkeypatch):
    _standin(tmp_path, monkeypatch, f'cat > {tmp_path}/got-$$\n'
                                    'echo "Submitted batch job $$"\n')
    scripts = {i: f"#!/bin/bash\n# job {i}\n" + "#" * 300_000 + "\ntrue\n" for i in range(3)}
    with SbatchPool(ahead=2) as pool:
        for i, text in scripts.items():
            pool.submit(i, text)
        ended = _drain(pool)
    assert sorted(e.job for e in ended) == [0, 1, 2] and all(e.code == 0 for e in ended)
    got = {e.job: (tmp_path / f"got-{e.stdout.split()[-1]}").read_text() for e in ended}
    assert got == scripts


def test_sbatch_ending_before_it_reads_its_script_is_reported_not_raised(tmp_path, monkeypatch):
    _standin(tmp_path, monkeypatch, 'echo "sbatch: error: stand-in refuses before reading" >&2\nexit 1\n')
    with SbatchPool(ahead=1) as pool:
        pool.submit("job", "#!/bin/bash\n" + "x" * 200_000 + "\n")  # a full pipe: the write meets a closed end
        ended = _drain(pool)
    assert [(e.job, e.code) for e in ended] == [("job", 1)]
    assert "stand-in refuses before reading" in ended[0].stderr


def test_spare_processes_get_an_empty_script_and_are_reaped(tmp_path, monkeypatch):
    _standin(tmp_path, monkeypatch, f'script=$(cat)\necho "${{#script}}" > {tmp_path}/len-$$\n'
                                    '[ -n "$script" ] || { echo "sbatch: error: Batch script is empty!" >&2; exit 1; }\n'
                                    'echo "Submitted batch job $$"\n')
    pool = SbatchPool(ahead=3)
    pool.submit("one", "#!/bin/bash\ntrue\n")
    ended = _drain(pool)
    pool.close()
    pool.close()  # twice is harmless
    lengths = sorted(int(p.read_text()) for p in tmp_path.glob("len-*"))
    assert [e.code for e in ended] == [0] and lengths == [0, 0, len("#!/bin/bash\ntrue\n") - 1]


def test_a_missing_sbatch_is_a_slurm_error_when_a_job_needs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    pool = SbatchPool(ahead=2)  # started in the background: the failure waits for a job to need sbatch
    with pytest.raises(SlurmError, match="cannot run sbatch") as info:
        pool.submit("job", "#!/bin/bash\ntrue\n")
    assert "\n" not in str(info.value) and pool.running == 0
    with pytest.raises(SlurmError, match="cannot run sbatch"):
        pool.ahead(1)
    pool.close()


@dataclass
class _Job:
    stage: object
    text: str
    dependency: str | None


@dataclass
class _Stage:
    name: str


def test_the_dependency_line_gets_the_job_ids_as_submitit_would_render_them():
    text = "#!/bin/bash\n\n# Parameters\n#SBATCH --dependency='afterok:${data_id}:${model_id}'\n#SBATCH --nodes=1\n"
    job = _Job(_Stage("train"), text, "afterok:${data_id}:${model_id}")
    assert _final_script(job, {"data": "41", "model": "42"}) == \
        "#!/bin/bash\n\n# Parameters\n#SBATCH --dependency=afterok:41:42\n#SBATCH --nodes=1\n"
    assert _final_script(_Job(_Stage("data"), text, None), {}) == text
    with pytest.raises(SlurmError, match="cannot find the line") as info:
        _final_script(_Job(_Stage("train"), "#!/bin/bash\n", "afterok:${data_id}"), {"data": "41"})
    assert "\n" not in str(info.value)
