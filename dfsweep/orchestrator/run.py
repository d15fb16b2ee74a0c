"""The driver's job, prepare -> sweep -> report, for the CLI and the benchmarks (the CLI only parses and calls here).

`resolve_config` decides the run's config (--config, else the run's saved config.yaml, else defaults; options
override), refuses to mix results of different configs in one run directory and stamps the saved config with the
dfsweep version that wrote it; `check_inputs` checks what the run needs (dataset roots, weights file) before prepare
and Ray; `attach` starts or joins Ray and refuses storage the cluster cannot share; `run_all` does the three stages,
each from the files of the one before. Problems a user can fix come out as RunError with the whole story in its message.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from dfsweep import __version__, schema
from dfsweep.config import DEPRECATED, SECTIONS, Config, ConfigError, config_from_dict, config_to_dict, load_config, \
    with_overrides
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


# The first line of every config.yaml a run saves: YAML reads it as a comment, so any dfsweep loads the file, and
# a dfsweep that cannot load it can still say which version wrote it.
STAMP = "# dfsweep_version: {version} (the dfsweep that wrote this run's config)\n"
_STAMP = re.compile(r"^# dfsweep_version: (\S+)")


def saved_version(run: schema.RunDir) -> str | None:
    """The dfsweep version stamped into the run's config.yaml; None for a run from before stamps (or without one)."""
    try:
        m = _STAMP.match(run.config.read_text())
    except (OSError, UnicodeDecodeError):
        return None
    return m.group(1) if m else None


def unknown_keys(data: Any) -> list[str]:
    """`section.key` of every section and key of a parsed config that this dfsweep does not know."""
    if not isinstance(data, dict):
        return []
    unknown = [str(sec) for sec in data if sec not in SECTIONS]
    for sec, cls in SECTIONS.items():
        values = data.get(sec)
        if isinstance(values, dict):
            known = {f.name for f in dataclasses.fields(cls)} | {old for (s, old) in DEPRECATED if s == sec}
            unknown += [f"{sec}.{k}" for k in values if k not in known]
    return unknown


def saved_config_error(run: schema.RunDir, exc: Exception) -> RunError:
    """Why the run's saved config.yaml cannot be used by this dfsweep: which keys it does not know, which version
    wrote the run, and what to do."""
    try:
        data = yaml.safe_load(run.config.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        data = None
    version = saved_version(run)
    who = (f"was written by dfsweep {version}" if version else
           "carries no dfsweep version stamp (written by a dfsweep from before runs were stamped)")
    unknown = unknown_keys(data)
    keys = f"key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} {'are' if len(unknown) > 1 else 'is'}"
    what = f"its {keys} unknown to this dfsweep" if unknown else f"it does not load here: {exc}"
    other = f"dfsweep {version}" if version and version != __version__ else "the dfsweep version that made the run"
    made = " (the run's results so far were made with them)" if _has_results(run) else ""
    them = "those keys" if len(unknown) > 1 else "it"
    todo = (f"use {other} for this run (pip install 'dfsweep=={version or 'VERSION'}'), or start a new run directory"
            + (f"; or, to go on with this version's defaults instead, delete {them} from {run.config}{made}"
               if unknown else ""))
    return RunError(f"{run.config} {who}; this is dfsweep {__version__}, and {what}. To go on: {todo}")


def _has_results(run: schema.RunDir) -> bool:
    return run.crops_done.exists() or bool(run.scores.glob("*.parquet"))


def refuse_changed_config(run: schema.RunDir, cfg: Config) -> None:
    """Results made under one prepare/train config must not be mixed with another's in the same run directory, nor
    with those of a config this dfsweep cannot read (another version's). Sweep changes are allowed: added seeds or
    variants run only the new trials, and the report covers exactly the planned ones (orchestrator/sweep)."""
    if not run.config.exists() or not _has_results(run):
        return
    try:
        saved = yaml.safe_load(run.config.read_text()) or {}
        config_from_dict(saved)
    except (ConfigError, yaml.YAMLError) as exc:
        raise saved_config_error(run, exc) from None
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
        saved = not config and run.config.exists()
        try:
            cfg = load_config(config if config else (run.config if saved else None))
        except ConfigError as exc:
            raise saved_config_error(run, exc) if saved else RunError(str(exc)) from None
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
        run.config.write_text(STAMP.format(version=__version__) + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    except OSError as exc:
        raise RunError(f"cannot write to {run.root}: {exc}") from None
    return cfg


HDF5_MAGIC, ZIP_MAGIC = b"\x89HDF\r\n\x1a\n", b"PK\x03\x04"  # a .weights.h5 / .h5 file; a .keras file


def _dataset_problems(cfg: Config) -> list[str]:
    from dfsweep.data_pipeline.layouts import resolve_layout
    from dfsweep.data_pipeline.paths import escape_path

    problems = []
    for domain in ("source", "target"):
        root, layout = getattr(cfg.prepare, domain), getattr(cfg.prepare, f"{domain}_layout")
        if not root:
            problems.append(f"prepare.{domain} is not set: give --{domain} or prepare.{domain} in the config "
                            "(a dataset root with real/ and fake/)")
            continue
        path, shown = Path(root), escape_path(root)
        if not path.is_dir():
            problems.append(f"prepare.{domain} {shown} does not exist or is not a folder")
            continue
        name, why = resolve_layout(path, layout)
        if name is None:
            missing = [d for d in ("real", "fake") if not (path / d).is_dir()]
            if layout in ("auto", "generic") and len(missing) == 1:
                why = f"expected {shown}/real/ and {shown}/fake/"
                problems.append(f"prepare.{domain} {shown} has no {missing[0]}/ folder; {why}")
            else:
                problems.append(f"prepare.{domain} {shown} matches no dataset layout: {why}")
    return problems


def _weights_problem(weights: str) -> str | None:
    path = Path(weights)
    if not path.exists():
        return f"train.weights {weights} does not exist (give a local Keras file, or imagenet, or none)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        return f"train.weights {weights} cannot be read: {exc.strerror or exc}"
    hdf5_only = path.name.endswith(".h5")
    if head == HDF5_MAGIC or (head[:4] == ZIP_MAGIC and not hdf5_only):
        return None
    kind = "an HDF5 file" if hdf5_only else "a .keras (zip) or HDF5 (.h5) file"
    found = "it is empty" if not head else f"it starts with {head!r}"
    return f"train.weights {weights} is not a Keras weights file ({kind} was expected; {found})"


def check_inputs(cfg: Config, run: schema.RunDir, *, datasets: bool = True, weights: bool = True) -> None:
    """What the run needs, checked before prepare and before Ray (and under --dry-run): the dataset roots (datasets:
    prepare will scan them) and a train.weights file (weights: when a trial still to run builds a Keras model).
    RunError listing every problem."""
    problems = _dataset_problems(cfg) if datasets else []
    if weights and cfg.train.weights not in ("imagenet", "none"):
        from dfsweep.orchestrator.sweep import sweep_state
        from dfsweep.trainables.variants import get_variant

        if any(get_variant(t["variant"]).keras for t in sweep_state(cfg, run).todo):
            problems += [p for p in [_weights_problem(cfg.train.weights)] if p]
    if problems:
        raise RunError("the run cannot start:" + "".join(f"\n  • {p}" for p in problems))


def needs_datasets(run: schema.RunDir, resume: bool) -> bool:
    """Whether prepare will scan the dataset roots: always, except when resuming with complete crops."""
    return not (resume and run.crops_done.exists())


def attach(address: str | None, run: schema.RunDir, *, shared_storage: bool, gpus_asked: bool, lazy: bool = False,
           job_name: str | None = None, log: Log = print):
    """Start or join Ray, say where its dashboard is and how to get past its token prompt, and refuse storage the
    cluster's other machines cannot reach. Returns the dashboard (cluster.DashboardAccess: its URL, whether it asks
    for a token), or None without one or when Ray was already running in this process.

    lazy: leave a local Ray to be started when there is work for it (a fresh local Ray is one machine: nothing to
    check); attach now only to a cluster (--address, RAY_ADDRESS) or a Ray already running in this process.
    job_name: this driver's name on the dashboard's Jobs page (e.g. `dfsweep run RUN_DIR`).
    """
    import ray

    from dfsweep.cluster import dashboard_access, ensure_ray
    from dfsweep.orchestrator.jobs import in_submitted_job

    if lazy and not (address or os.environ.get("RAY_ADDRESS") or ray.is_initialized()):
        return None
    access = dashboard_access(ensure_ray(address, job_name=job_name), address)
    if access and not in_submitted_job():  # the command that submitted the job has said it
        for line in access.lines():
            log(line)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus and not gpus_asked:
        log(f"[yellow]note:[/] the cluster has {gpus:g} GPU(s) but this run asks for none: trials and MTCNN "
            "actors run on CPUs (--gpus-per-trial, --gpus-per-worker)")
    try:
        check_cluster_storage(run.root, ray.nodes(), shared=shared_storage)
    except StorageError as exc:
        raise RunError(str(exc)) from None
    return access


def prepare(cfg: Config, run: schema.RunDir, *, force: bool = False, log: Log = print, console=None):
    """The prepare stage (data_pipeline): the manifest and crops; its Accounting. Unusable data: RunError.

    console: show its progress there (orchestrator.progress: live on a terminal, lines elsewhere)."""
    from dfsweep.data_pipeline.pipeline import prepare as prepare_crops
    from dfsweep.data_pipeline.scan import DatasetError
    from dfsweep.orchestrator.progress import PrepareProgress

    try:
        if console is None:
            return prepare_crops(cfg.prepare, run, force=force, log=log)
        with PrepareProgress(console) as shown:
            return prepare_crops(cfg.prepare, run, force=force, log=log, progress=shown)
    except DatasetError as exc:
        raise RunError(str(exc)) from None


def run_all(cfg: Config, run: schema.RunDir, *, resume: bool = False, log: Log = print, console=None,
            on_prepared: Callable[[Any], None] | None = None, verbose: bool = False) -> dict[str, Any]:
    """prepare (unless resuming with complete crops) -> Tune sweep -> report; returns the summary.

    on_prepared receives prepare's Accounting (the CLI prints it). With a console, the report is drawn there and,
    unless verbose, prepare and the sweep show their progress there (orchestrator.progress) instead of Ray Data's
    and Tune's own.
    """
    from dfsweep.orchestrator.sweep import run_sweep
    from dfsweep.verdict.report import report

    check_inputs(cfg, run, datasets=needs_datasets(run, resume))
    if resume and run.crops_done.exists():
        log(f"resuming: crops are complete in {run.crops}; the datasets are not rescanned")
    else:
        acc = prepare(cfg, run, log=log, console=None if verbose else console)
        if on_prepared:
            on_prepared(acc)
    run_sweep(cfg, run, log=log, console=None if verbose else console)
    return report(run.root, cfg.report, console)
