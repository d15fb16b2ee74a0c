"""Ray's cluster launcher end to end on this machine: `ray up` / `ray exec` / `ray down` with configs/cluster-local.yaml
over ssh to 127.0.0.1 run `dfsweep run --address auto --submit` on a tiny demo, with Ray's token authentication set up
as Ray documents it for launched clusters, and the dashboard is reached through `ray dashboard` (scripts/ray_up_local.py
does the work).

Opt-in and slow (~2-3 minutes on 2 cores): `make test-ssh`, which installs openssh-server and rsync if missing and
runs this file with DFSWEEP_SSH_TEST=1 in a private network namespace (scripts/isolated.sh). It starts its own sshd
on the namespace's 127.0.0.1:22 and never touches /etc/ssh or ~/.ssh.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, _only_loopback

pytestmark = [pytest.mark.ssh, pytest.mark.ray, pytest.mark.slow]

HELPER = REPO / "scripts" / "ray_up_local.py"


def _why_not() -> str | None:
    if os.environ.get("DFSWEEP_SSH_TEST") != "1":
        return "opt-in: set DFSWEEP_SSH_TEST=1 (`make test-ssh` does, and installs openssh-server)"
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        return "sshd not installed (apt-get install openssh-server; `make test-ssh` tries)"
    missing = [t for t in ("ssh", "ssh-keygen", "rsync") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install openssh-client rsync)"
    if os.geteuid() != 0:
        return "starts sshd on port 22 of a private network namespace: needs root"
    if not _only_loopback():
        return "runs only in a loopback-only network namespace: use `make test-ssh` (scripts/isolated.sh)"
    return None


@pytest.fixture(scope="module")
def launched(tmp_path_factory, request):
    why = _why_not()
    if why:
        pytest.skip(why)
    weights_file = request.getfixturevalue("weights_file")
    work = tmp_path_factory.mktemp("ray-up-ssh")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    proc = subprocess.run([sys.executable, str(HELPER), str(work), "--weights", str(weights_file)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=2400)
    result = json.loads((work / "result.json").read_text()) if (work / "result.json").exists() else {}
    return work, proc, result


def test_ray_up_exec_down_runs_the_sweep_over_ssh(launched):
    work, proc, result = launched
    assert proc.returncode == 0, proc.stdout[-8000:]
    steps = {s["step"]: s["rc"] for s in result["steps"]}
    assert steps == {"token": 0, "ssh-check": 0, "ray-up": 0, "ray-exec-demo": 0, "ray-exec-run": 0, "ray-down": 0}, \
        steps


def test_every_planned_trial_wrote_scores_and_the_report_exists(launched):
    work, proc, _ = launched
    from dfsweep.config import config_from_dict
    from dfsweep.orchestrator.sweep import plan_trials

    planned = sorted(t["trial_id"] for t in plan_trials(config_from_dict(yaml.safe_load((work / "tiny.yaml").read_text()))))
    assert len(planned) >= 2
    run = work / "run"
    assert sorted(p.stem for p in (run / "scores").glob("*.parquet")) == planned, proc.stdout[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary  # the report ran on the head, from the scores written by the trials
    # `ray exec` ran this checkout's dfsweep, from the venv put on PATH by the yaml's setup_commands.
    exec_log = (work / "logs" / "ray-exec-demo.log").read_text()
    assert f"dfsweep from {REPO / 'dfsweep' / '__init__.py'}" in exec_log


def test_the_cluster_ran_on_loopback_with_the_yamls_settings(launched):
    work, proc, result = launched
    up = (work / "logs" / "ray-up.log").read_text()
    assert "Local node IP" in up and "127.0.0.1" in up, up[-3000:]
    assert "--dashboard-host=127.0.0.1" in up
    # ssh forwards no environment: the yaml's exports reached the Ray that `ray start` ran over ssh.
    assert result["gcs_server_env"]["RAY_AUTH_MODE"] == "token", result["gcs_server_env"]
    assert result["gcs_server_env"]["RAY_TMPDIR"] == result["ray_tmp"]
    # The yaml's file_mounts put the client's token on the head.
    assert result["head_token_is_the_clients"]
    # Nothing of the launcher landed in the real home directory: the ssh logins had WORKDIR/home.
    assert (work / "home" / "ray_bootstrap_config.yaml").is_file()
    assert "dfsweep-venv" in (work / "home" / ".bashrc").read_text()


def test_the_dashboard_through_ray_dashboard_asks_for_the_token_and_lists_the_submitted_run(launched):
    work, proc, result = launched
    dash = result["dashboard"]
    assert dash["mode"] == "token", dash
    assert dash["jobs_without_token"] == 401 and dash["jobs_with_token"] == 200, dash
    submitted = [j for j in dash["jobs"] if j["type"] == "SUBMISSION"]
    assert len(submitted) == 1 and submitted[0]["status"] == "SUCCEEDED", dash["jobs"]
    assert submitted[0]["job_name"] == "dfsweep run run"
    assert submitted[0]["entrypoint"].split()[1:3] == ["run", str(work / "run")], submitted
    # `ray exec` followed the job's log to its end.
    run_log = (work / "logs" / "ray-exec-run.log").read_text()
    assert "submitted as Ray job dfsweep-run-run-" in run_log and "SUCCEEDED" in run_log, run_log[-3000:]
    assert "ray get-auth-token" in run_log  # what dfsweep printed on the head: how to get past the prompt


def test_ray_down_leaves_no_ray_process_running(launched):
    work, proc, result = launched
    assert result.get("ray_processes_before_down", 0) > 0  # there was a cluster to take down
    assert result["ray_processes_after_down"] == [], proc.stdout[-4000:]
    sys.path.insert(0, str(REPO / "scripts"))
    from ray_up_local import ray_processes

    # The helper ran in a PID namespace of its own (nested in this one, so visible here), gone with it. Other Ray
    # tests' clusters in this process are not this run's: only processes of its Ray temp dir count.
    assert [p for p in ray_processes() if result["ray_tmp"] in p] == []
