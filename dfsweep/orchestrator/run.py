"""The driver's job, prepare -> sweep -> report, for the CLI and the benchmarks (the CLI only parses and calls here).

`resolve_config` decides the run's config (--config, else the run's saved config.yaml, else defaults; options
override) and refuses to mix results of different configs in one run directory; `attach` starts or joins Ray and
refuses storage the cluster cannot share; `run_all` does the three stages, each from the files of the one before.
Problems a user can fix come out as RunError with the whole story in its message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import yaml

from dfsweep import schema
from dfsweep.config import Config, ConfigError, config_to_dict, load_config, with_overrides
from dfsweep.storage import StorageError, check_cluster_storage

Log = Callable[[str], None]


class RunError(Exception):
    """A run that cannot go on as asked; the message says why and what to do."""


def absolute_paths(cfg: Config) -> Config:
    """Relative paths are taken from the working directory here, once: trials run in other directories (and nodes)."""
    def absolute(p: str) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else None
    cfg = with_overrides(cfg, "prepare", source=absolute(cfg.prepare.source), target=absolute(cfg.prepare.target))
    if cfg.train.weights not in ("imagenet", "none"):
        cfg = with_overrides(cfg, "train", weights=absolute(cfg.train.weights))
    return cfg


def refuse_changed_config(run: schema.RunDir, cfg: Config) -> None:
    """Results made under one prepare/train config must not be mixed with another's in the same run directory."""
    if not run.config.exists() or not (run.crops_done.exists() or any(run.scores.glob("*.parquet"))):
        return
    saved = yaml.safe_load(run.config.read_text()) or {}
    new = config_to_dict(cfg)
    changed = [f"{sec}.{k}" for sec in ("prepare", "train") for k, v in new[sec].items()
               if saved.get(sec, {}).get(k, v) != v]
    if changed:
        raise RunError(f"{run.root} holds results made with a different config ({', '.join(changed)} changed); "
                       "use a new run directory, or delete this one")


def resolve_config(run: schema.RunDir, config: str | Path | None, overrides: dict[str, dict[str, Any]]) -> Config:
    """--config, else the run's saved config.yaml, else defaults; `overrides` ({section: {key: value}}, None values
    ignored) on top; paths made absolute; checked against the run's results and saved to the run."""
    try:
        cfg = load_config(config if config else (run.config if run.config.exists() else None))
        for section, values in overrides.items():
            cfg = with_overrides(cfg, section, **values)
        cfg = absolute_paths(cfg)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    except OSError as exc:  # storage that cannot be reached (no such bucket, no credentials, no network)
        raise RunError(f"cannot read {run.root}: {exc}") from None
    refuse_changed_config(run, cfg)
    try:
        run.root.mkdir()
        run.config.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    except OSError as exc:
        raise RunError(f"cannot write to {run.root}: {exc}") from None
    return cfg


def attach(address: str | None, run: schema.RunDir, *, shared_storage: bool, gpus_asked: bool, lazy: bool = False,
           log: Log = print) -> None:
    """Start or join Ray, say where its dashboard is, and refuse storage the cluster's other machines cannot reach.

    lazy: leave a local Ray to be started when there is work for it (a fresh local Ray is one machine: nothing to
    check); attach now only to a cluster (--address, RAY_ADDRESS) or a Ray already running in this process.
    """
    import ray

    from dfsweep.cluster import dashboard_url, ensure_ray

    if lazy and not (address or os.environ.get("RAY_ADDRESS") or ray.is_initialized()):
        return
    url = dashboard_url(ensure_ray(address))
    if url:
        log(f"Ray dashboard: [link={url}]{url}[/link]")
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus and not gpus_asked:
        log(f"[yellow]note:[/] the cluster has {gpus:g} GPU(s) but this run asks for none: trials and MTCNN "
            "actors run on CPUs (--gpus-per-trial, --gpus-per-worker)")
    try:
        check_cluster_storage(run.root, ray.nodes(), shared=shared_storage)
    except StorageError as exc:
        raise RunError(str(exc)) from None


def prepare(cfg: Config, run: schema.RunDir, *, force: bool = False, log: Log = print):
    """The prepare stage (data_pipeline): the manifest and crops; its Accounting. Unusable data: RunError."""
    from dfsweep.data_pipeline.pipeline import prepare as prepare_crops
    from dfsweep.data_pipeline.scan import DatasetError

    try:
        return prepare_crops(cfg.prepare, run, force=force, log=log)
    except DatasetError as exc:
        raise RunError(str(exc)) from None


def run_all(cfg: Config, run: schema.RunDir, *, resume: bool = False, log: Log = print, console=None,
            on_prepared: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """prepare (unless resuming with complete crops) -> Tune sweep -> report; returns the summary.

    on_prepared receives prepare's Accounting (the CLI prints it).
    """
    from dfsweep.orchestrator.sweep import run_sweep
    from dfsweep.verdict.report import report

    if resume and run.crops_done.exists():
        log(f"resuming: crops are complete in {run.crops}; the datasets are not rescanned")
    else:
        acc = prepare(cfg, run, log=log)
        if on_prepared:
            on_prepared(acc)
    run_sweep(cfg, run, log=log)
    return report(run.root, cfg.report, console)
