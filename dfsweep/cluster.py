"""Connecting to Ray: reuse a running session, attach to a cluster (`--address`, RAY_ADDRESS), or start a local one."""

from __future__ import annotations

import os


def ensure_ray(address: str | None = None, num_cpus: int | None = None):
    """Initialise Ray once per process and return its context (None when it was already running)."""
    import ray

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        return ray.init(address=address, log_to_driver=False)
    # A local Ray: the dashboard is kept on loopback; trials are watched there.
    return ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)


def dashboard_url(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    return f"http://{url}" if url and not url.startswith("http") else url
