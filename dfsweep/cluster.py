"""Connecting to Ray: reuse a running session, attach to a cluster (`--address`, RAY_ADDRESS), or start a local one;
and where its dashboard is and how a user gets past its token prompt."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def ensure_ray(address: str | None = None, num_cpus: int | None = None, job_name: str | None = None):
    """Initialise Ray once per process and return its context (None when it was already running).

    job_name: what the dashboard's Jobs page shows in its Name column for this driver (Ray's `job_name` metadata)."""
    import ray

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    job = {"job_config": ray.job_config.JobConfig(metadata={"job_name": job_name})} if job_name else {}
    if address:
        return ray.init(address=address, log_to_driver=False, **job)
    # A local Ray: the dashboard is kept on loopback; trials are watched there.
    return ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False, **job)


def dashboard_url(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    return f"http://{url}" if url and not url.startswith("http") else url


# Where Ray 2.60 reads its token from, highest priority first (docs.ray.io, ray-security/token-auth): the variable,
# a file named by a variable, the default file. `ray get-auth-token` prints whichever applies.
TOKEN_ENV, TOKEN_PATH_ENV, AUTH_MODE_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"


def token_source() -> str:
    """Where this machine's Ray token comes from, in words (never the token itself)."""
    if os.environ.get(TOKEN_ENV):
        return f"the {TOKEN_ENV} environment variable"
    if os.environ.get(TOKEN_PATH_ENV):
        return os.environ[TOKEN_PATH_ENV]
    return str(Path.home() / ".ray" / "auth_token")


def dashboard_auth_mode(url: str, timeout_s: float = 5.0) -> str | None:
    """What the dashboard at `url` asks of a browser: "token" (the sign-in prompt) or "disabled"; None when it cannot
    be asked (not reachable from here). /api/authentication_mode is the public endpoint the dashboard's page asks."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/authentication_mode", timeout=timeout_s) as resp:
            return str(json.load(resp).get("authentication_mode"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


@dataclass(frozen=True)
class DashboardAccess:
    """How a user opens the dashboard: its URL, whether it asks for a token, and whether it is a cluster's (on the
    head node, reached from a laptop through `ray dashboard CLUSTER.yaml`)."""

    url: str
    token: bool
    cluster: bool

    def lines(self) -> list[str]:
        """What dfsweep prints on start (rich markup): the URL, how to get past the prompt, where the sweep is."""
        where = (f"[link={self.url}]{self.url}[/link]" + (" on the cluster's head node (on a `ray up` cluster, from "
                 "your machine: [bold]ray dashboard CLUSTER.yaml[/], then http://localhost:8265)" if self.cluster else ""))
        if self.token:
            machine = " (here, or on the machine that ran `ray up`)" if self.cluster else ""
            access = (f"it asks for a token: paste what [bold]ray get-auth-token[/] prints{machine}; "
                      f"the token is kept in {token_source()}")
        else:
            access = "no token needed (token authentication is off)"
        return [f"Ray dashboard: {where}; {access}",
                "  the sweep there: Jobs (this run), Actors (one per trial, its trial id in the Repr column; the "
                "trial's log has a line per epoch)"]


def dashboard_access(ctx, address: str | None) -> DashboardAccess | None:
    """The dashboard of the Ray this process is connected to (ctx: ray.init's context), or None without one.
    Whether it asks for a token is asked of the dashboard itself; where it cannot be reached from here, this
    process's own setting (RAY_AUTH_MODE, which Ray sets to token when it turns token auth on) says."""
    url = dashboard_url(ctx)
    if not url:
        return None
    mode = dashboard_auth_mode(url) or os.environ.get(AUTH_MODE_ENV, "disabled").lower()
    return DashboardAccess(url=url, token=mode == "token",
                           cluster=bool(address or os.environ.get("RAY_ADDRESS")))
