"""The `dfsweep` command: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console

from dfsweep import schema
from dfsweep.config import Config, ConfigError, config_to_dict, load_config, with_overrides

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


def _absolute_paths(cfg: Config) -> Config:
    """Relative paths are taken from the working directory here, once: trials run in other directories (and nodes)."""
    def absolute(p: str) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else None
    cfg = with_overrides(cfg, "prepare", source=absolute(cfg.prepare.source), target=absolute(cfg.prepare.target))
    if cfg.train.weights not in ("imagenet", "none"):
        cfg = with_overrides(cfg, "train", weights=absolute(cfg.train.weights))
    return cfg


def _refuse_changed_config(run: schema.RunDir, cfg: Config) -> None:
    """Results made under one prepare/train config must not be mixed with another's in the same run directory."""
    if not run.config.exists() or not (run.crops_done.exists() or any(run.scores.glob("*.parquet"))):
        return
    saved = yaml.safe_load(run.config.read_text()) or {}
    new = config_to_dict(cfg)
    changed = [f"{sec}.{k}" for sec in ("prepare", "train") for k, v in new[sec].items()
               if saved.get(sec, {}).get(k, v) != v]
    if changed:
        _fail(f"{run.root} holds results made with a different config ({', '.join(changed)} changed); "
              "use a new run directory, or delete this one")


def _resolve_config(run: schema.RunDir, config: Optional[Path], source: Optional[Path], target: Optional[Path],
                    **prepare_overrides) -> Config:
    """--config, else the run's saved config.yaml, else defaults; command-line options override; saved to the run."""
    try:
        cfg = load_config(config if config else (run.config if run.config.exists() else None))
        cfg = with_overrides(cfg, "prepare", source=str(source) if source else None, target=str(target) if target else None,
                             **prepare_overrides)
        cfg = _absolute_paths(cfg)
    except ConfigError as exc:
        _fail(str(exc))
    _refuse_changed_config(run, cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    run.config.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return cfg


def _print_accounting(acc) -> None:
    rejects = {k: v for k, v in acc.by_status.items() if k != schema.STATUS_OK}
    line = " + ".join([f"inputs {acc.inputs} = crops {acc.crops}"] + [f"{k} {v}" for k, v in sorted(rejects.items())])
    console.print(f"[bold]accounting:[/] {line}  [{'green' if acc.balanced else 'red'}]"
                  f"{'adds up' if acc.balanced else 'DOES NOT ADD UP'}[/]")
    console.print("crops by split: " + ", ".join(f"{k} {v}" for k, v in acc.by_split.items())
                  + f"; faces detected now: {acc.detected_now} (the rest from the run's detection cache)")


RunDirArg = typer.Argument(..., help="Run directory: manifest, crops, scores, summary.json and config.yaml live here.")
ConfigOpt = typer.Option(None, "--config", "-c", help=CONFIG_HELP, exists=True, dir_okay=False)
SourceOpt = typer.Option(None, help="Source dataset root (real/ and fake/ inside); overrides prepare.source.")
TargetOpt = typer.Option(None, help="Target dataset root (real/ and fake/ inside); overrides prepare.target.")
LayoutOpt = typer.Option(None, help="Force the layout of both roots: generic (real/ + fake/), ciplab or manjilkarki "
                         "(the paper's Kaggle sets). Default: detected (prepare.source_layout/target_layout).")
WorkersOpt = typer.Option(None, help="MTCNN actors for face cropping (prepare.face_workers).")
GpusOpt = typer.Option(None, help="GPUs per MTCNN actor, e.g. 0.25 (prepare.gpus_per_face_worker); 0 = CPU.")


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
def prepare(run_dir: Path = RunDirArg, config: Optional[Path] = ConfigOpt, source: Optional[Path] = SourceOpt,
            target: Optional[Path] = TargetOpt, layout: Optional[str] = LayoutOpt, workers: Optional[int] = WorkersOpt,
            gpus_per_worker: Optional[float] = GpusOpt,
            force: bool = typer.Option(False, help="Redo face cropping even if the run's crops are complete.")) -> None:
    """Scan both datasets into manifest.parquet and crop faces with MTCNN on Ray Data into crops/*.parquet."""
    from dfsweep.data_pipeline.pipeline import prepare as run_prepare
    from dfsweep.data_pipeline.scan import DatasetError

    run = schema.RunDir(run_dir)
    cfg = _resolve_config(run, config, source, target, **_prepare_overrides(layout, workers, gpus_per_worker))
    try:
        acc = run_prepare(cfg.prepare, run, force=force, log=console.print)
    except DatasetError as exc:
        _fail(str(exc))
    _print_accounting(acc)


@app.command()
def run(run_dir: Path = RunDirArg, config: Optional[Path] = ConfigOpt, source: Optional[Path] = SourceOpt,
        target: Optional[Path] = TargetOpt, layout: Optional[str] = LayoutOpt, workers: Optional[int] = WorkersOpt,
        gpus_per_worker: Optional[float] = GpusOpt,
        address: Optional[str] = typer.Option(None, help="Ray cluster to attach to ('auto' on a cluster's head node; "
                                              "default: RAY_ADDRESS, else a local Ray)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned trials and exit.")) -> None:
    """The whole job: prepare (if its crops are missing) -> Ray Tune sweep -> report. Re-running resumes."""
    from dfsweep.cluster import dashboard_url, ensure_ray
    from dfsweep.data_pipeline.pipeline import prepare as run_prepare
    from dfsweep.data_pipeline.scan import DatasetError
    from dfsweep.orchestrator.report import report
    from dfsweep.orchestrator.sweep import plan_trials, run_sweep

    run_ = schema.RunDir(run_dir)
    cfg = _resolve_config(run_, config, source, target, **_prepare_overrides(layout, workers, gpus_per_worker))
    try:
        trials = plan_trials(cfg)
    except ValueError as exc:
        _fail(str(exc))
    res = f"{cfg.sweep.cpus_per_trial:g} CPU, {cfg.sweep.gpus_per_trial:g} GPU per trial"
    console.print(f"{len(trials)} trials ({res}): " + ", ".join(t["trial_id"] for t in trials))
    if dry_run:
        from rich.table import Table

        from dfsweep.trainables.data import perturbation_levels

        table = Table(title="planned trials")
        for col in ("trial", "variant", "augmentation", "seed", "CPU", "GPU"):
            table.add_column(col)
        for t in trials:
            table.add_row(t["trial_id"], t["variant"], t["augmentation"], str(t["seed"]), f"{cfg.sweep.cpus_per_trial:g}",
                          f"{cfg.sweep.gpus_per_trial:g}")
        console.print(table)
        levels = ", ".join(f"{p} {lv}" for p, lv in perturbation_levels(cfg.train)) or "none"
        console.print(f"degraded test sets (made once, scored by every trial): {levels}; frozen-backbone features "
                      f"{'cached and shared' if cfg.sweep.share_work else 'recomputed by every trial'}")
        return
    ctx = ensure_ray(address)
    url = dashboard_url(ctx)
    if url:
        console.print(f"Ray dashboard: [link={url}]{url}[/link]")
    try:
        acc = run_prepare(cfg.prepare, run_, log=console.print)
    except DatasetError as exc:
        _fail(str(exc))
    _print_accounting(acc)
    run_sweep(cfg, run_, log=console.print)
    report(run_.root, cfg.report, console)
    console.print(f"summary: {run_.summary}")


@app.command()
def predict(model_or_run: Path = typer.Argument(..., help="A .keras model, or a run directory (its trial with the "
                                                "best source-val AUC is used; test scores never choose)."),
            paths: list[Path] = typer.Argument(..., help="Images, videos or folders to score."),
            threshold: float = typer.Option(0.5, help="Score at or above which a face is called fake."),
            out: Path = typer.Option(Path("predictions.csv"), help="CSV file for the table.")) -> None:
    """Score new images, folders or videos: MTCNN face crop, then the model; a table on screen and a CSV."""
    from rich.table import Table

    from dfsweep.orchestrator.predict import predict as run_predict
    from dfsweep.orchestrator.predict import write_csv

    try:
        chosen, rows = run_predict(model_or_run, paths, threshold=threshold)
    except FileNotFoundError as exc:
        _fail(str(exc))
    console.print(f"model: {chosen.path} ({chosen.why})")
    table = Table(title=f"predictions (verdict at threshold {threshold})")
    for col in ("file", "frame", "face", "score", "verdict", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(Path(r["file"]).name, "" if r["frame_index"] < 0 else str(r["frame_index"]),
                      f"{r['face_prob']:.3f}" if r["face_found"] else "no", "" if r["score"] is None else f"{r['score']:.3f}",
                      r["verdict"], r["reason"])
    console.print(table)
    write_csv(rows, out)
    console.print(f"{len(rows)} rows -> {out}")


@app.command("report")
def report_cmd(run_dir: Path = RunDirArg,
               compare: Optional[Path] = typer.Option(
                   None, "--compare", metavar="OTHER_RUN",
                   help="Put OTHER_RUN (A) beside RUN_DIR (B): mean AUC ± sd per arm, domain and AUC level, and B − A "
                        "(`dfsweep report --compare RUN_A RUN_B`). Writes compare.json instead of the report."),
               out: Optional[Path] = typer.Option(None, "--out", dir_okay=False,
                                                  help="Where --compare writes its JSON (default: ./compare.json).")) -> None:
    """Rebuild the report from RUN_DIR/scores alone (no Ray, no TensorFlow): rich tables, summary.json, metrics.csv,
    figures/ and a self-contained report.html."""
    from dfsweep.orchestrator.report import COMPARE_JSON, REPORT_HTML, report
    from dfsweep.orchestrator.report import compare as compare_runs

    runs = [schema.RunDir(run_dir)] + ([schema.RunDir(compare)] if compare is not None else [])
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
    except (ConfigError, schema.SchemaError) as exc:
        _fail(str(exc))
    console.print(f"summary: {runs[0].summary}")
    console.print(f"report: {runs[0].root / REPORT_HTML}")


def main() -> None:  # pragma: no cover - `python -m dfsweep.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
