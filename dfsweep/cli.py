"""The `dfsweep` command: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dfsweep import schema
from dfsweep.config import Config, ConfigError
from dfsweep.orchestrator.jobs import job_name
from dfsweep.orchestrator.run import RunError, attach, check_inputs, needs_datasets, resolve_config, saved_config_error
from dfsweep.storage import StorageError

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # silences TensorFlow's oneDNN banner
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(help="Cross-dataset deepfake-detection sweeps: does V2 generalise better than V1, and how sure are we?",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Piped or logged output (CI, `make demo | tee`) gets 140 columns so the report's tables are not squeezed.
console = Console(width=None if sys.stdout.isatty() else 140)

CONFIG_HELP = "YAML file overriding the defaults (sections: prepare, train, sweep, report). Default: RUN_DIR/config.yaml if present."


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    raise typer.Exit(2)


def _stopped(resume: str) -> None:
    """Ctrl-C: the stages stop at a file boundary (whole files or none), so say how to go on and exit 130."""
    console.print(f"[bold yellow]stopped (Ctrl-C)[/]: what was finished is kept (detections, crops, trial scores and "
                  f"checkpoints); resume with: [bold]{resume}[/]", soft_wrap=True)
    raise typer.Exit(130)


def _open_run(run_dir: str) -> schema.RunDir:
    try:
        return schema.RunDir(run_dir)
    except StorageError as exc:
        _fail(str(exc))


def _resolve_config(run: schema.RunDir, config: Optional[Path], source: Optional[Path], target: Optional[Path],
                    sweep_overrides: dict | None = None, **prepare_overrides) -> Config:
    """--config, else the run's saved config.yaml, else defaults; command-line options override; saved to the run."""
    prepare = dict(prepare_overrides, source=str(source) if source else None, target=str(target) if target else None)
    try:
        return resolve_config(run, config, {"prepare": prepare, "sweep": sweep_overrides or {}})
    except RunError as exc:
        _fail(str(exc))


def _attach(address: Optional[str], run: schema.RunDir, shared_storage: bool, gpus_asked: bool,
            lazy: bool = False, job_name: Optional[str] = None):
    try:
        return attach(address, run, shared_storage=shared_storage, gpus_asked=gpus_asked, lazy=lazy,
                      job_name=job_name, log=console.print)
    except RunError as exc:
        _fail(str(exc))


def _submit(command: str, run: schema.RunDir, flags: list[str], address: Optional[str], shared_storage: bool,
            gpus_asked: bool, resume: str) -> None:
    """--submit: start or join Ray, run `dfsweep COMMAND RUN_DIR FLAGS` as a Ray Job, follow it, exit with its status."""
    from dfsweep.orchestrator.jobs import Detached, JobError, agent_port_problem, run_as_job, submission_id

    local = not (address or os.environ.get("RAY_ADDRESS"))
    problem = agent_port_problem() if local else None
    if problem:
        _fail(problem)
    sid = submission_id(run, command)
    access = _attach(address, run, shared_storage, gpus_asked, job_name=job_name(command, run, follows=True))
    if access is None:
        _fail("--submit needs the Ray dashboard, which takes the job, and this Ray has none (start the cluster's head "
              "with its dashboard)")
    try:
        code = run_as_job(access.url, command, run, flags, local=local, token=access.token, log=console.print,
                          write=lambda text: console.out(text, end="", highlight=False), sid=sid)
    except JobError as exc:
        _fail(str(exc))
    except Detached as exc:
        console.print(f"[yellow]{exc}[/]", soft_wrap=True)
        raise typer.Exit(130)
    except KeyboardInterrupt:
        _stopped(resume)
    if code:
        raise typer.Exit(code)


def _print_accounting(acc) -> None:
    rejects = {k: v for k, v in acc.by_status.items() if k != schema.STATUS_OK}
    line = " + ".join([f"inputs {acc.inputs} = crops {acc.crops}"] + [f"{k} {v}" for k, v in sorted(rejects.items())])
    console.print(f"[bold]accounting:[/] {line}  [{'green' if acc.balanced else 'red'}]"
                  f"{'adds up' if acc.balanced else 'DOES NOT ADD UP'}[/]")
    console.print("crops by split: " + ", ".join(f"{k} {v}" for k, v in acc.by_split.items())
                  + f"; faces detected now: {acc.detected_now} (the rest from the run's detection cache)")


RunDirArg = typer.Argument(..., metavar="RUN_DIR",
                           help="Run directory: config.yaml, manifest, crops, checkpoints, scores and the report live "
                                "here. A local path, or a storage URI every node can reach (s3://bucket/prefix, "
                                "gs://bucket/prefix).")
ConfigOpt = typer.Option(None, "--config", "-c", help=CONFIG_HELP, exists=True, dir_okay=False)
SourceOpt = typer.Option(None, help="Source dataset root (real/ and fake/ inside); overrides prepare.source.")
TargetOpt = typer.Option(None, help="Target dataset root (real/ and fake/ inside); overrides prepare.target.")
LayoutOpt = typer.Option(None, help="Force the layout of both roots: generic (real/ + fake/), ciplab or manjilkarki "
                         "(the paper's Kaggle sets). Default: detected (prepare.source_layout/target_layout).")
WorkersOpt = typer.Option(None, help="MTCNN actors for face cropping (prepare.face_workers).")
GpusOpt = typer.Option(None, help="GPUs per MTCNN actor, e.g. 0.25 (prepare.gpus_per_face_worker); 0 = CPU.")
AddressOpt = typer.Option(None, help="Ray cluster to attach to ('auto' on a cluster's head node; default: RAY_ADDRESS, "
                          "else a local Ray).")
SubmitOpt = typer.Option(False, "--submit",
                         help="Run the driver as a Ray Job: the dashboard's Jobs page lists it (`dfsweep COMMAND "
                              "RUN_DIR`) with its live log, and on a cluster it goes on when this command or its ssh "
                              "session ends. This command follows the job's log and exits with its status. The job "
                              "reads the config saved in RUN_DIR, so RUN_DIR must be where the cluster's head node "
                              "finds it too (this machine, a shared mount, or a storage URI).")
VerboseOpt = typer.Option(False, "--verbose", "-v",
                          help="Show Ray's, Ray Data's and Tune's own output (Tune's status tables, Ray Data's "
                               "progress) instead of dfsweep's progress display; they always go to RUN_DIR/logs/.")
SharedOpt = typer.Option(False, "--shared-storage",
                         help="RUN_DIR is a local path mounted at the same place on every node (NFS and the like); "
                              "without it a local RUN_DIR is refused on a cluster of several machines unless its mount "
                              "type is a known shared one.")


def _prepare_overrides(layout: Optional[str], workers: Optional[int], gpus: Optional[float]) -> dict:
    return dict(source_layout=layout, target_layout=layout, face_workers=workers, gpus_per_face_worker=gpus)


@app.command("demo-data")
def demo_data(out: Path = typer.Argument(..., help="Folder to write OUT/{source,target}/{real,fake}/*.png into."),
              seed: int = typer.Option(0, help="Seed of the manipulations' random jitter."),
              people_per_domain: int = typer.Option(20, help="ORL people per domain (even, at most 20)."),
              photos_per_person: int = typer.Option(10, help="Photos per person (at most 10).")) -> None:
    """Build the embedded demo benchmark from the ORL face photos: face-swap fakes (source), self-blend fakes (target)."""
    from dfsweep.data_pipeline.demo import build_demo

    with console.status("building demo benchmark (MTCNN landmarks + manipulations)"):
        counts = build_demo(out, seed=seed, people_per_domain=people_per_domain, photos_per_person=photos_per_person,
                            log=console.print)
    console.print(f"demo benchmark in {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command()
def prepare(run_dir: str = RunDirArg, config: Optional[Path] = ConfigOpt, source: Optional[Path] = SourceOpt,
            target: Optional[Path] = TargetOpt, layout: Optional[str] = LayoutOpt, workers: Optional[int] = WorkersOpt,
            gpus_per_worker: Optional[float] = GpusOpt, address: Optional[str] = AddressOpt,
            shared_storage: bool = SharedOpt, submit: bool = SubmitOpt, verbose: bool = VerboseOpt,
            force: bool = typer.Option(False, help="Redo face cropping even if the run's crops are complete.")) -> None:
    """Scan both datasets into manifest.parquet and crop faces with MTCNN on Ray Data into crops/*.parquet."""
    from dfsweep.orchestrator.run import prepare as run_prepare
    from dfsweep.orchestrator.runlog import RunLog

    run = _open_run(run_dir)
    cfg = _resolve_config(run, config, source, target, **_prepare_overrides(layout, workers, gpus_per_worker))
    try:
        check_inputs(cfg, run, weights=False)
    except RunError as exc:
        _fail(str(exc))
    if submit:
        flags = ["--force"] * force + ["--shared-storage"] * shared_storage + ["--verbose"] * verbose
        _submit("prepare", run, flags, address, shared_storage, cfg.prepare.gpus_per_face_worker > 0,
                resume=f"dfsweep prepare {run_dir}")
        return
    with RunLog(run, console, command="prepare", verbose=verbose):
        _attach(address, run, shared_storage, gpus_asked=cfg.prepare.gpus_per_face_worker > 0, lazy=True,
                job_name=job_name("prepare", run))
        try:
            acc = run_prepare(cfg, run, force=force, log=console.print, console=None if verbose else console)
        except RunError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _stopped(f"dfsweep prepare {run_dir}")
    _print_accounting(acc)


@app.command()
def run(run_dir: str = RunDirArg, config: Optional[Path] = ConfigOpt, source: Optional[Path] = SourceOpt,
        target: Optional[Path] = TargetOpt, layout: Optional[str] = LayoutOpt, workers: Optional[int] = WorkersOpt,
        gpus_per_worker: Optional[float] = GpusOpt,
        gpus_per_trial: Optional[float] = typer.Option(
            None, help="GPUs per Tune trial, e.g. 1 or 0.5 (sweep.gpus_per_trial); an autoscaling cluster launches "
                       "GPU nodes only for work that asks for GPUs."),
        address: Optional[str] = AddressOpt, shared_storage: bool = SharedOpt, submit: bool = SubmitOpt,
        resume: bool = typer.Option(False, "--resume",
                                    help="Continue an interrupted run with its saved config: finished crops and "
                                         "trials are kept, unfinished trials continue from their last checkpoint, and "
                                         "the datasets are not rescanned once the crops are complete."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned arms and trials (the grid of "
                                     "sweep.arms or its axes), what is left to run and the estimated CPU-minutes, "
                                     "and exit."),
        verbose: bool = VerboseOpt) -> None:
    """The whole job: prepare (if its crops are missing) -> Ray Tune sweep -> report. Re-running resumes."""
    from dfsweep.orchestrator.run import run_all
    from dfsweep.orchestrator.runlog import RunLog
    from dfsweep.orchestrator.sweep import plan_trials

    run_ = _open_run(run_dir)
    if resume and (config or source or target or layout or workers is not None or gpus_per_worker is not None
                   or gpus_per_trial is not None):
        _fail("--resume continues a run with its saved config.yaml: drop --config/--source/--target/--layout/"
              "--workers/--gpus-per-worker, or start a new run directory")
    if resume and not run_.config.exists():
        _fail(f"nothing to resume: {run_.config} does not exist (start the run without --resume)")
    cfg = _resolve_config(run_, config, source, target, sweep_overrides=dict(gpus_per_trial=gpus_per_trial),
                          **_prepare_overrides(layout, workers, gpus_per_worker))
    try:
        trials = plan_trials(cfg)
        check_inputs(cfg, run_, datasets=needs_datasets(run_, resume))  # before prepare and Ray, dry run or not
    except (ValueError, RunError) as exc:
        _fail(str(exc))
    res = f"{cfg.sweep.cpus_per_trial:g} CPU, {cfg.sweep.gpus_per_trial:g} GPU per trial"
    console.print(f"{len(trials)} trials ({res}): " + ", ".join(t["trial_id"] for t in trials))
    if dry_run:
        from dfsweep.orchestrator.dryrun import show_plan

        show_plan(cfg, run_, console)
        return
    gpus_asked = cfg.prepare.gpus_per_face_worker > 0 or cfg.sweep.gpus_per_trial > 0
    if submit:
        flags = ["--resume"] * resume + ["--shared-storage"] * shared_storage + ["--verbose"] * verbose
        _submit("run", run_, flags, address, shared_storage, gpus_asked, resume=f"dfsweep run --resume {run_dir}")
        return
    with RunLog(run_, console, command="run", verbose=verbose):
        _attach(address, run_, shared_storage, gpus_asked=gpus_asked, job_name=job_name("run", run_))
        try:
            run_all(cfg, run_, resume=resume, log=console.print, console=console, on_prepared=_print_accounting,
                    verbose=verbose)
        except RunError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _stopped(f"dfsweep run --resume {run_dir}")
    console.print(f"summary: {run_.summary}")


@app.command()
def predict(model_or_run: str = typer.Argument(..., help="A .keras model, or a run directory (its trial with the "
                                               "best source-val AUC is used; test scores never choose); a local path "
                                               "or a storage URI."),
            paths: list[Path] = typer.Argument(..., help="Images, videos or folders to score."),
            threshold: float = typer.Option(0.5, help="Score at or above which a face (or a video) is called fake."),
            all_faces: bool = typer.Option(False, "--all-faces",
                                           help="Score every face MTCNN finds in an image or frame, each row naming "
                                                "its face (index left to right, box, probability). By default one "
                                                "face each: the one the model's training crops kept (its model card's "
                                                "face_policy)."),
            out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                              help="CSV file (or folder, or storage URI) for the table. Default: "
                                                   "RUN_DIR/predictions/<time>-<trial>.csv of the model's run, or "
                                                   "predictions/ beside a model file given alone.")) -> None:
    """Score new images, folders or videos: MTCNN face crop, then the model; a table on screen and a CSV.

    A video gets a row per sampled frame, then its verdict row (grain "video"): the mean of its frames' scores, the
    report's video level. The CSV's columns, in order (README, "Score new files", says what each holds): file, grain,
    frame_index, face_index, status, score, verdict, reason, face_found, face_prob, n_faces, primary_face, box_x1,
    box_y1, box_x2, box_y2, frames_scored, frames_sampled.

    Exit status: 0 every input was scored; 3 some inputs could not be scored (no face, unreadable, unsupported, ...:
    listed in the table and the CSV with their reason); 2 a usage or input error (a model or run that cannot be used,
    a path that does not exist, a CSV that cannot be written).
    """
    from dfsweep.orchestrator.predict import InputError, ModelError, predict_to_csv

    try:
        res = predict_to_csv(model_or_run, paths, out=out, threshold=threshold, all_faces=all_faces,
                             log=console.print)
    except (FileNotFoundError, InputError, ModelError, schema.SchemaError, StorageError) as exc:
        _fail(str(exc))
    console.print(res.table())
    console.print(res.summary(), soft_wrap=True)
    raise typer.Exit(res.exit_code)


@app.command("report")
def report_cmd(run_dir: str = RunDirArg,
               compare: Optional[str] = typer.Option(
                   None, "--compare", metavar="OTHER_RUN",
                   help="Put OTHER_RUN (A) beside RUN_DIR (B): mean AUC ± sd per arm, domain and AUC level, and B − A "
                        "(`dfsweep report --compare RUN_A RUN_B`). Writes compare.json instead of the report."),
               out: Optional[Path] = typer.Option(None, "--out", dir_okay=False,
                                                  help="Where --compare writes its JSON (default: ./compare.json).")) -> None:
    """Rebuild the report from RUN_DIR/scores alone (no Ray, no TensorFlow): rich tables, summary.json, metrics.csv,
    figures/ and a self-contained report.html."""
    from dfsweep.verdict.report import COMPARE_JSON, REPORT_HTML, report
    from dfsweep.verdict.report import compare as compare_runs

    runs = [_open_run(run_dir)] + ([_open_run(compare)] if compare is not None else [])
    for r in runs:
        if not r.scores.is_dir():
            _fail(f"{r.scores} does not exist: nothing to report (run `dfsweep run {r.root}` first)")
    try:
        if compare is not None:
            path = out if out is not None else Path.cwd() / COMPARE_JSON
            compare_runs(runs[1].root, runs[0].root, path, console)
            console.print(f"comparison: {path}")
            return
        report(runs[0].root, None, console)
    except ConfigError as exc:  # the run's saved config (its report section) does not load here
        bad = next((r for r in runs if r.config.exists()), None)
        _fail(str(saved_config_error(bad, exc)) if bad else str(exc))
    except (schema.SchemaError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"summary: {runs[0].summary}")
    console.print(f"report: {runs[0].root / REPORT_HTML}")


def main() -> None:  # pragma: no cover - `python -m dfsweep.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
