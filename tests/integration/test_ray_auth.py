"""Per-job Ray token authentication on the real local cluster (issue 18, items 1-2).

A process on another node of the allocation (its own network namespace) without the job's token
gets 401 from the Jobs API for listing and submitting; with the token it works. A stale
`~/.ray/auth_token` and a RAY_AUTH_* in the user's environment change nothing, in both modes. The
token never lands in a file under the chain's log dir and is deleted at teardown.
"""
from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import LocalSlurm
from tests.integration.test_ray_launch import RayRun, make_spec, submit

pytestmark = pytest.mark.integration

# Runs inside a node's network namespace: the HTTP status of list/submit with and without a token.
PROBE = r'''
import json, sys, urllib.request, urllib.error
base, token = sys.argv[1], sys.argv[2]
def call(path, body=None, token=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": "Bearer " + token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
job = {"entrypoint": "echo probe", "submission_id": "probe-" + sys.argv[3]}
print(json.dumps({
    "list_without": call("/api/jobs/"), "submit_without": call("/api/jobs/", job),
    "list_wrong": call("/api/jobs/", token="0" * 64),
    "list_with": call("/api/jobs/", token=token), "submit_with": call("/api/jobs/", job, token=token),
}))
'''


def stale_home(tmp_path: Path) -> tuple[Path, str]:
    """A HOME whose ~/.ray/auth_token (what any local ray.init() writes) is not this job's."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    stale = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(stale)
    return home, stale


def token_file(run: RayRun) -> Path:
    return run.log_dir / ".auth" / "token"


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_text(errors="replace")]


def test_without_the_token_a_node_gets_401_with_it_jobs_work(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    home, stale = stale_home(tmp_path)
    hold = tmp_path / "hold"
    hold.touch()
    run = submit(local_slurm, make_spec(tmp_path / "chain", 2, 4, driver_args=["--sleep-while", str(hold)]),
                 nodelist=",".join(local_slurm.nodes[:2]), name="auth",
                 # the user's own Ray auth settings must not decide anything
                 env_extra={"HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": stale})
    token = run.wait_for(lambda: token_file(run).exists() and token_file(run).read_text().strip(),
                         "the run's token file")
    assert len(token) == 64 and token != stale
    assert stat.S_IMODE(token_file(run).stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file(run).parent.stat().st_mode) == 0o700
    run.wait_for(lambda: (run.chain / "record.json").exists(), "the driver to be running")
    base = run.read("head.json")["dashboard_url"]
    probe = subprocess.run(
        ["nsenter", f"--net=/run/netns/{local_slurm.netns[1]}", sys.executable, "-c", PROBE, base, token,
         run.job_id], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    codes = json.loads(probe.stdout)
    assert codes == {"list_without": 401, "submit_without": 401, "list_wrong": 403,
                     "list_with": 200, "submit_with": 200}, codes
    record = json.loads((run.chain / "record.json").read_text())
    assert record["env"]["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in record["env"]
    assert "RAY_AUTH_TOKEN_PATH" in record["env"]  # (the stand-in hashes values of *TOKEN* names)

    hold.unlink()
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()
    assert not token_file(run).exists() and not token_file(run).parent.exists()
    assert files_containing(run.chain, token) == []
    assert (home / ".ray" / "auth_token").read_text() == stale  # the user's file untouched
    run.assert_no_ray_left()


def test_auth_disabled_is_explicit_despite_a_token_in_home(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    # With RAY_AUTH_MODE unset, Ray >= 2.59 would turn auth on for the head from ~/.ray/auth_token
    # while the launcher sends no token: the run only succeeds because the mode is explicit.
    home, _ = stale_home(tmp_path)
    run = submit(local_slurm, make_spec(tmp_path / "chain", 2, 4, ray={"auth": "disabled"}),
                 nodelist=",".join(local_slurm.nodes[:2]), name="noauth",
                 env_extra={"HOME": str(home), "RAY_AUTH_MODE": "token"})
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()
    record = json.loads((run.chain / "record.json").read_text())
    assert record["env"]["RAY_AUTH_MODE"] == "disabled"
    assert not token_file(run).parent.exists()
    run.assert_no_ray_left()


def test_failed_run_keeps_ray_log_tails_without_the_token(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    """Items 7 and 9 with auth on: a failing driver; Ray's session log tails land in the run's
    ray-logs/, the node-local temp dirs are gone, ANSI codes nowhere, the token in no file."""
    hold = tmp_path / "hold"
    hold.touch()
    run = submit(local_slurm, make_spec(tmp_path / "chain", 2, 4, driver_args=[
        "--sleep-while", str(hold), "--print-lines", "5", "--exit-code", "7"]),
        nodelist=",".join(local_slurm.nodes[:2]), name="tails")
    token = run.wait_for(lambda: token_file(run).exists() and token_file(run).read_text().strip(),
                         "the run's token file")
    run.wait_for(lambda: (run.chain / "record.json").exists(), "the driver to be running")
    hold.unlink()
    state, done = run.finish()
    assert (state, done["exit_code"], done["state"]) == ("FAILED", 1, "failed"), run.tails()
    assert "\x1b[" not in json.dumps(done) and "\x1b" not in done["message"]
    for i, host in enumerate(local_slurm.nodes[:2]):
        tails = run.log_dir / "ray-logs" / f"node-{i}-{host}"
        names = {p.name for p in tails.glob("*.tail")}
        assert "raylet.out.tail" in names, (names, run.tails())
        assert not Path(f"/tmp/ray-{run.job_id}-{i}-0").exists()
    assert "gcs_server.out.tail" in {p.name for p in (run.log_dir / "ray-logs" / f"node-0-{local_slurm.nodes[0]}").iterdir()}
    assert "ray_driver line 5" in (run.log_dir / "driver.log").read_text()
    assert files_containing(run.chain, token) == []
    assert not token_file(run).exists()
    run.assert_no_ray_left()
