"""What dfsweep says about the Ray dashboard and its jobs, without Ray: how to get in (never the token), the job a
`--submit` runs, and a trial's per-epoch log line. tests/test_dashboard_browser.py checks all of it against a real
dashboard in Chromium."""

import re

import pytest
from datetime import datetime, timezone

from dfsweep import schema
from dfsweep.cluster import DashboardAccess, dashboard_access, dashboard_auth_mode, token_source
from dfsweep.orchestrator import jobs
from dfsweep.trainables.train import progress_line


def test_a_local_dashboard_with_token_auth_says_which_command_prints_the_token(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    first, second = DashboardAccess("http://127.0.0.1:8265", token=True, cluster=False).lines()
    assert first.startswith("Ray dashboard: [link=http://127.0.0.1:8265]http://127.0.0.1:8265[/link]; it asks for")
    assert "ray get-auth-token" in first and str(tmp_path / ".ray" / "auth_token") in first
    assert "ray dashboard" not in first
    assert "Actors" in second and "trial id" in second and "Jobs" in second


def test_a_cluster_dashboard_says_how_to_reach_it_from_your_machine():
    first, _ = DashboardAccess("http://10.0.0.5:8265", token=True, cluster=True).lines()
    assert "ray dashboard CLUSTER.yaml" in first and "http://localhost:8265" in first
    assert "the machine that ran `ray up`" in first


def test_without_token_auth_no_token_is_asked_for():
    first, _ = DashboardAccess("http://127.0.0.1:8265", token=False, cluster=False).lines()
    assert "no token needed" in first and "get-auth-token" not in first


def test_a_token_given_in_the_environment_is_named_never_shown(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cr3t-token-value")
    assert token_source() == "the RAY_AUTH_TOKEN environment variable"
    assert "s3cr3t" not in " ".join(DashboardAccess("http://127.0.0.1:8265", True, False).lines())
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/etc/ray/token")
    assert token_source() == "/etc/ray/token"


def test_a_dashboard_that_cannot_be_reached_leaves_the_mode_to_this_process(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert dashboard_auth_mode(url, timeout_s=2) is None

        class Ctx:
            dashboard_url = url.removeprefix("http://")

        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # what Ray sets when it turns token auth on
        assert dashboard_access(Ctx(), None) == DashboardAccess(url, token=True, cluster=False)
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        assert dashboard_access(Ctx(), "auto") == DashboardAccess(url, token=False, cluster=True)
    assert dashboard_access(None, None) is None


def test_the_submitted_job_runs_dfsweep_on_the_run_directory_with_its_saved_config(tmp_path):
    run = schema.RunDir(tmp_path / "my run")
    entry = jobs.entrypoint("run", run, ["--resume"])
    assert entry.endswith(f"run '{tmp_path / 'my run'}' --resume")  # absolute, quoted for the job's shell
    assert "--config" not in entry and "--source" not in entry
    assert jobs.program()[-1] in ("dfsweep", "dfsweep.cli") or jobs.program()[0].endswith("/dfsweep")
    sid = jobs.submission_id(run, "run", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert sid == "dfsweep-run-my_run-20260102-030405"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", sid)
    assert jobs.job_name("run", run) == "dfsweep run my run"
    assert jobs.job_name("run", run, follows=True) == "dfsweep run my run --submit: follows its job"
    job = jobs.Job(id=sid, url="http://127.0.0.1:8265", entrypoint=entry)
    assert jobs.job_cli(job, "stop", token=True) == f"RAY_AUTH_MODE=token ray job stop --address http://127.0.0.1:8265 {sid}"
    assert jobs.job_cli(job, "logs --follow", token=False).startswith("ray job logs --follow --address ")


def test_a_trials_report_becomes_one_log_line():
    epoch = dict(phase="finetune", train_loss=0.41234, val_auc=0.873456, val_loss=0.52, epoch=3)
    assert progress_line("v2-paper-s3", epoch) == \
        "[v2-paper-s3] epoch 3 (finetune): train_loss 0.4123, val_auc 0.8735, val_loss 0.52"
    done = dict(phase="done", epoch=5, chosen_epoch="finetune-2", scores_written=1234)
    assert progress_line("v2-paper-s3", done) == \
        "[v2-paper-s3] done after epoch 5: chosen_epoch finetune-2, scores_written 1234"
    assert progress_line("cue-none-s1", dict(phase="cue", C=0.01, val_auc=0.7)) == "[cue-none-s1] cue: C 0.01, val_auc 0.7"


def test_a_submission_waits_for_the_job_agent_and_gives_up_on_other_errors(monkeypatch, tmp_path):
    """Ray's dashboard answers 'No available agent to submit job, please try again later' until its job agent is up
    (seen on a loaded machine): the submission tries again; any other refusal is final, and so is a wait past
    AGENT_WAIT_S. (The client stands in for the dashboard's HTTP answers; the real submission runs in
    test_dashboard_browser.)"""
    from dfsweep import schema
    from dfsweep.orchestrator import jobs

    class Client:
        def __init__(self, answers):
            self.answers, self.calls = list(answers), 0

        def submit_job(self, **kw):
            self.calls += 1
            answer = self.answers.pop(0)
            if answer is not None:
                raise RuntimeError(answer)

    slept = []
    monkeypatch.setattr("time.sleep", slept.append)
    busy = f"Request failed with status code 500: {jobs.NO_AGENT}, please try again later."
    client = Client([busy, busy, None])
    monkeypatch.setattr(jobs, "_client", lambda url: client)
    run = schema.RunDir(tmp_path / "run")
    job = jobs.submit("http://127.0.0.1:8265", "run", run)
    assert client.calls == 3 and len(slept) == 2 and job.id
    monkeypatch.setattr(jobs, "_client", lambda url: Client(["Request failed with status code 400: bad entrypoint"]))
    with pytest.raises(jobs.JobError, match="did not take the job: .*bad entrypoint"):
        jobs.submit("http://127.0.0.1:8265", "run", run)
    monkeypatch.setattr(jobs, "AGENT_WAIT_S", -1.0)
    monkeypatch.setattr(jobs, "_client", lambda url: Client([busy]))
    with pytest.raises(jobs.JobError, match="No available agent"):
        jobs.submit("http://127.0.0.1:8265", "run", run)
