"""`--submit`: the driver runs as a Ray Job, and this command follows its log and ends with its exit status.

A submitted run is listed on the dashboard's Jobs page by its command (`dfsweep run RUN_DIR`) with its live log and
Ray Data's view of prepare, and on a cluster it outlives the terminal (or the `ray exec` ssh session) that started it.
The job reads everything from the run directory: the config this command resolved and saved there, and the crops;
so the run directory must be where the cluster's head node finds it too (the same machine, a shared mount, or a
storage URI). The job's own Ray address comes from Ray (RAY_ADDRESS in its environment).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from dfsweep import __version__, schema

SUBMITTED_ENV = "DFSWEEP_JOB"  # in a submitted job's environment: its submission id (the job's driver then stays quiet
# about the dashboard, which the submitting command has already announced)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobError(Exception):
    """The job could not be submitted or followed; the message says why."""


class Detached(Exception):
    """Ctrl-C while following a job on a cluster: the job goes on; the message says how to follow or stop it."""


@dataclass(frozen=True)
class Job:
    id: str
    url: str  # the dashboard that took it
    entrypoint: str


def program() -> list[str]:
    """How the job's shell starts this dfsweep: `dfsweep` where that is on PATH and is this one (so the Jobs page
    reads `dfsweep run ...`), else this environment's console script, else `python -m dfsweep.cli`."""
    script = Path(sys.executable).parent / "dfsweep"
    found = shutil.which("dfsweep")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return ["dfsweep"]
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dfsweep.cli"]


def entrypoint(command: str, run: schema.RunDir, flags: Sequence[str] = ()) -> str:
    """The job's shell command: `dfsweep COMMAND RUN_DIR FLAGS` with the run directory absolute (or its URI). No config
    options: the job reads the config this command saved in the run directory."""
    return shlex.join([*program(), command, str(run.root), *flags])


def job_name(command: str, run: schema.RunDir, follows: bool = False) -> str:
    """A driver's name on the Jobs page (its Name column, Ray's `job_name` metadata; the Entrypoint column beside it
    has the whole command): `dfsweep run RUN_NAME`, and for the command that submitted a job, what it does."""
    name = f"dfsweep {command} {run.root.name}"
    return f"{name} --submit: follows its job" if follows else name


def submission_id(run: schema.RunDir, command: str, now: datetime | None = None) -> str:
    """`dfsweep-run-<run name>-<UTC time>`: unique, and readable in the Jobs page's Submission ID column."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", run.root.name or "run").strip("_")[:60] or "run"
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"dfsweep-{command}-{name}-{stamp}"


NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 60.0  # how long a submission waits for the dashboard's job agent to come up
# The port a local Ray's dashboard agent listens on (ray.init offers no way to change it): the agent takes the jobs.
AGENT_PORT = 52365


def agent_port_problem(port: int = AGENT_PORT) -> str | None:
    """Why a job cannot be submitted to a new local Ray here, or None: another Ray on this machine (one started with
    or without its dashboard) already holds its dashboard agent's port, so the new Ray's agent never comes up and its
    dashboard answers every submission with "No available agent" (measured with Ray 2.60)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return None
    return (f"another Ray (or another program) on this machine listens on 127.0.0.1:{port}, the port of a local "
            "Ray's dashboard agent, which takes submitted jobs: a new local Ray could not take the job. Submit to that "
            "Ray instead (--address auto, if it has a dashboard), stop it (`ray stop`), or run without --submit")


def _client(url: str):
    from ray.job_submission import JobSubmissionClient

    try:
        # Token auth: the client sends this process's token (Ray turned it on when it started or joined the cluster).
        return JobSubmissionClient(url)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise JobError(f"cannot reach the Ray dashboard at {url} to submit the job: {exc}") from None


def submit(url: str, command: str, run: schema.RunDir, flags: Sequence[str] = (), sid: str | None = None) -> Job:
    """Submit `dfsweep COMMAND RUN_DIR FLAGS` as a Ray Job to the dashboard at url (sid: its submission id)."""
    import time

    client = _client(url)
    sid, entry = sid or submission_id(run, command), entrypoint(command, run, flags)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(entrypoint=entry, submission_id=sid,
                              metadata={"job_name": job_name(command, run), "dfsweep_command": command,
                                        "dfsweep_run": str(run.root), "dfsweep_version": __version__},
                              runtime_env={"env_vars": {SUBMITTED_ENV: sid}})
            return Job(id=sid, url=url, entrypoint=entry)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # A dashboard whose job agent has not come up yet (a fresh Ray on a busy machine) answers "No available
            # agent to submit job, please try again later": it is, for a while; anything else is final.
            if NO_AGENT not in str(exc) or time.monotonic() > deadline:
                raise JobError(f"the Ray dashboard at {url} did not take the job: {exc}") from None
            time.sleep(2.0)


def job_cli(job: Job, verb: str, token: bool) -> str:
    """The `ray job` command a user types for this job (`logs --follow`, `stop`, `status`)."""
    auth = "RAY_AUTH_MODE=token " if token else ""  # Ray's job CLI sends the token only in token mode
    return f"{auth}ray job {verb} --address {job.url} {job.id}"


def follow(job: Job, write: Callable[[str], None], *, poll_s: float = 0.5, settle_s: float = 30.0) -> tuple[str, int]:
    """Copy the job's log to `write` as it grows, until the job ends; returns (status, exit status). The exit status
    is the job's command's own (2 for a usage error, 130 after a clean Ctrl-C, ...), 0 when it succeeded, else 1."""
    client = _client(job.url)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job.id):
            write(chunk)

    import logging

    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed ...": noise
    try:
        asyncio.run(tail())
    except RuntimeError as exc:  # the log stream closed early: the job's status below says what happened
        write(f"(the job's log stream ended: {exc})\n")
    # The stream ends with the job; its final status is recorded a moment later.
    deadline = time.monotonic() + settle_s
    info = client.get_job_info(job.id)
    while str(info.status) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll_s)
        info = client.get_job_info(job.id)
    status = str(info.status)
    if status == "SUCCEEDED":
        return status, 0
    code = info.driver_exit_code
    return status, code if isinstance(code, int) and code > 0 else 1


def stop(job: Job, timeout_s: float = 30.0) -> str:
    """Stop the job and wait (up to timeout_s) until Ray says it ended; returns its status."""
    client = _client(job.url)
    client.stop_job(job.id)
    deadline = time.monotonic() + timeout_s
    status = str(client.get_job_status(job.id))
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = str(client.get_job_status(job.id))
    return status


def run_as_job(url: str, command: str, run: schema.RunDir, flags: Sequence[str], *, local: bool, token: bool,
               log: Callable[[str], None], write: Callable[[str], None], sid: str | None = None) -> int:
    """Submit `dfsweep COMMAND RUN_DIR FLAGS` (as submission id sid), follow it, return its exit status.

    local: the Ray is the one this process started, which ends with it: Ctrl-C stops the job too (and raises
    KeyboardInterrupt). On a cluster, Ctrl-C leaves the job running and raises Detached with what to type."""
    job = submit(url, command, run, flags, sid)
    log(f"submitted as Ray job [bold]{job.id}[/]: {job.entrypoint}")
    log(f"  its log follows (also on the dashboard's Jobs page; `{job_cli(job, 'logs --follow', token)}`)")
    try:
        status, code = follow(job, write)
    except KeyboardInterrupt:
        if local:
            try:
                stop(job)
            except Exception:  # noqa: BLE001 - the local Ray is going down with this command; the job goes with it
                pass
            raise
        raise Detached(f"stopped following; Ray job {job.id} goes on in the cluster. Follow it: "
                       f"{job_cli(job, 'logs --follow', token)}; stop it: {job_cli(job, 'stop', token)}; or the "
                       "dashboard's Jobs page") from None
    colour = "green" if code == 0 else "red"
    log(f"Ray job {job.id}: [{colour}]{status}[/]" + (f" (exit status {code})" if code else ""))
    return code


def in_submitted_job() -> bool:
    """Whether this process is a submitted job's driver."""
    return bool(os.environ.get(SUBMITTED_ENV))
