"""The Ray dashboard as a user meets it, in headless Chromium, during a tiny sweep run as `dfsweep run --submit`.

Ray's token auth is on as users get it: the command runs in a subprocess with its own HOME and without the suite's
RAY_AUTH_MODE=disabled, so its local `ray.init` turns token auth on and writes HOME/.ray/auth_token. What dfsweep
prints must get a user in (the URL, the command that prints the token, never the token); without the token the
dashboard shows its prompt; with it pasted there, the Jobs page lists the run and the Actors page its trial by id,
whose log holds the trial's per-epoch line. The sweep is held at its first checkpoint while the browser looks
(its driver's first event waits for a reader on the DFSWEEP_EVENTS FIFO), so nothing here races the run.

DFSWEEP_DASHBOARD_SCREENSHOT=PATH also saves the Actors page's screenshot at PATH.
"""

import asyncio
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from chromium import CHROMIUM, Browser
from conftest import REPO, EventFifo, _require_loopback, session_ray_paused

from dfsweep import schema

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.tf]

TRIAL = "v1-none-s1"


class Output:
    """A child's output, line by line, as it comes; `wait_for(text)` blocks until a line holds it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {timeout:.0f} s:\n{self.text[-4000:]}")
            if line is None:
                pytest.fail(f"the command ended before printing {text!r}:\n{self.text[-4000:]}")
            if text in line:
                return line

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def no_other_ray():
    """The run's own local Ray is the only one: the session's, if up, is paused (session_ray_paused)."""
    with session_ray_paused():
        yield


@pytest.fixture(scope="module")
def submitted(tiny_crops, weights_file, tmp_path_factory, no_other_ray):
    """`dfsweep run RUN --resume --submit` on the tiny crops (one V1 trial, 2 head epochs at 71 px), with Ray's token
    auth on; yields (run, process, its output, the events FIFO holding it, its HOME, the dashboard URL)."""
    _require_loopback()
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium)")
    work = tmp_path_factory.mktemp("dashboard")
    run = schema.RunDir(work / "run")
    shutil.copytree(tiny_crops.crops, run.crops)  # complete crops: --resume goes straight to the sweep
    run.config.write_text(yaml.safe_dump({
        "train": {"input_size_px": 71, "weights": str(weights_file.resolve()), "head_epochs": 2, "finetune_epochs": 1,
                  "batch_size": 8, "test_perturbations": {"jpeg": [], "blur": [], "noise": []}, "export_model": False},
        "sweep": {"variants": ["v1"], "seeds": [1], "cpus_per_trial": 1},
        "report": {"bootstrap_samples": 100},
    }))
    home = work / "home"
    home.mkdir()
    gate = EventFifo(work / "events.fifo", open_now=False)
    # A short Ray temp dir of its own (socket paths are limited to ~107 bytes), cleaned up below.
    ray_tmp = tempfile.mkdtemp(prefix="dfs-dash-")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN",
                                                            "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(home), RAY_TMPDIR=ray_tmp, PYTHONPATH=str(REPO), TERM="dumb", COLUMNS="200", **gate.env)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", "run", str(run.root), "--resume", "--submit"],
                            env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    gate.watch(proc)
    out = Output(proc)
    try:
        line = out.wait_for("Ray dashboard: ")
        url = line.split("Ray dashboard: ", 1)[1].split()[0].rstrip(";")
        out.wait_for("submitted as Ray job")
        yield run, proc, out, gate, home, url, t0
    finally:
        if proc.poll() is None:  # the test failed midway: let the run go, then stop it (its Ray ends with it)
            gate.open()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _api(url: str, path: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _trial_actor(url: str, token: str, trial: str, timeout: float = 180) -> dict:
    """The trial's actor as the dashboard's state API lists it, once it is there."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = _api(url, "/api/v0/actors?detail=1&limit=1000", token)
        assert status == 200, body[:500]
        actors = [a for a in json.loads(body)["data"]["result"]["result"] if a.get("repr_name") == trial]
        if actors:
            return actors[0]
        assert time.monotonic() < deadline, f"no actor of trial {trial} within {timeout:.0f} s: {body[:2000]}"
        time.sleep(0.5)


def _actor_log(url: str, token: str, actor_id: str, needle: str, timeout: float = 240) -> str:
    """The actor's stdout (its worker's .out log), through the dashboard's log API, once it holds `needle`."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = _api(url, f"/api/v0/logs/file?actor_id={actor_id}&suffix=out&lines=1000", token)
        if status == 200 and needle in body:
            return body
        assert time.monotonic() < deadline, f"the actor's log never showed {needle!r}: {status} {body[-2000:]}"
        time.sleep(0.5)


def test_the_dashboard_shows_the_submitted_sweep_and_its_trial_by_id(submitted, tmp_path):
    run, proc, out, gate, home, url, t0 = submitted
    printed = out.text
    # What dfsweep printed gets a user in: the URL, the command that prints the token, where it is kept.
    assert url == "http://127.0.0.1:8265", printed
    assert "ray get-auth-token" in printed and str(home / ".ray" / "auth_token") in printed, printed
    token = subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token"], env={**os.environ,
                           "HOME": str(home)}, capture_output=True, text=True, check=True).stdout.strip()
    assert token and token == (home / ".ray" / "auth_token").read_text().strip()
    assert token not in printed  # never the token itself
    sid = re.search(r"submitted as Ray job (dfsweep-run-run-\d{8}-\d{6})", printed).group(1)

    # The API refuses without the token and answers with it (what the browser's cookie carries).
    assert _api(url, "/api/jobs/")[0] == 401
    actor = _trial_actor(url, token, TRIAL)
    assert actor["class_name"] == "DfsweepTrial"
    # The trial prints its per-epoch line itself, into its own log. (The browser's log view is fetched once when
    # opened, so the line is waited for here first.)
    epoch_line = f"[{TRIAL}] epoch 1 (head): "
    assert "val_auc" in _actor_log(url, token, actor["actor_id"], epoch_line)

    shot = Path(os.environ.get("DFSWEEP_DASHBOARD_SCREENSHOT") or tmp_path / "actors.png")

    async def browse() -> dict:
        seen = {}
        async with Browser(tmp_path / "chromium") as b:
            await b.goto(url)
            seen["prompt"] = await b.wait_for_text("Authentication Token Required")
            await b.screenshot(tmp_path / "prompt.png")
            await b.type_into("input[type=password]", token)  # as a user pastes what `ray get-auth-token` printed
            await b.click("Submit")
            await b.wait_until_gone("Authentication Token Required")  # accepted: the page reloads with its cookie
            await b.goto(f"{url}/#/jobs")
            seen["job"] = await b.wait_for_row(sid, "RUNNING")
            await b.goto(f"{url}/#/actors")
            seen["trial"] = await b.wait_for_row(TRIAL, "DfsweepTrial", "ALIVE")
            await b.screenshot(shot)
            await b.goto(await b.link_in_row(TRIAL))  # the trial actor's own page, with its log
            await b.wait_for_text("Repr", TRIAL)
            await b.click("stdout")
            seen["log"] = await b.wait_for_text(epoch_line)
            await b.screenshot(shot.with_name(shot.stem + "-trial-log.png"))
        return seen

    seen = asyncio.run(browse())
    assert "ray get-auth-token" in seen["prompt"]  # Ray's own prompt says where the token comes from, as dfsweep does
    assert f"dfsweep run {run.root.name}" in seen["job"] and f"dfsweep run {run.root} --resume" in seen["job"]
    assert "val_auc" in seen["log"]
    assert shot.stat().st_size > 10_000

    gate.open()  # let the sweep go on
    assert gate.wait(lambda e: e["event"] == "checkpoint")["trial"] == TRIAL
    rc = proc.wait(300)
    assert rc == 0, out.text[-4000:]
    assert run.score_file(TRIAL).exists()
    assert f"Ray job {sid}: SUCCEEDED" in out.text
    # The job's log followed here is the driver's: no trial's per-epoch line floods it.
    assert f"[{TRIAL}] epoch" not in out.text
    print(f"dashboard test: {time.monotonic() - t0:.0f} s from `dfsweep run --submit` to the job's end")
