"""The report of one run directory: collect its scores once, build the summary and the figures' data, write
summary.json, metrics.csv, figures/*.png and report.html, and draw it on the console; and `compare` for two runs."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dfsweep import schema
from dfsweep.config import ReportConfig
from dfsweep.storage import Location, parse
from dfsweep.verdict.compare import compare_runs
from dfsweep.verdict.console import render, render_comparison
from dfsweep.verdict.figure_data import figure_data
from dfsweep.verdict.html import REPORT_HTML, write_html
from dfsweep.verdict.labels import FIGURES_DIR
from dfsweep.verdict.scores import ScoreFiles, collect_scores, not_in_sweep_warning, score_files, unscored_warning
from dfsweep.verdict.summary import METRICS_COLUMNS, build_summary, group_scores, timed

__all__ = ["COMPARE_JSON", "FIGURES_DIR", "REPORT_HTML", "compare", "report", "write_metrics_csv", "write_summary"]

COMPARE_JSON = "compare.json"  # `dfsweep report --compare` writes it in the working directory unless --out says otherwise


def _jsonable(obj: Any) -> Any:
    """Plain JSON data: numpy scalars as Python numbers, nan as None (strict JSON has no nan)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_summary(summary: dict[str, Any], path: str | Path | Location) -> None:
    parse(path).write_text(json.dumps(_jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_metrics_csv(summary: dict[str, Any], path: str | Path | Location) -> None:
    """summary["metrics"] as CSV (summary.METRICS_COLUMNS), one row per trial x domain x perturbation x level x grain;
    empty cells for None."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in _jsonable(summary["metrics"]):
        w.writerow({k: "" if row.get(k) is None else row[k] for k in METRICS_COLUMNS})
    parse(path).write_text(f.getvalue())


def with_plan(summary: dict[str, Any], files: ScoreFiles) -> dict[str, Any]:
    """The summary naming, against the sweep's plan, the score files it leaves out (`not_in_sweep`) and the planned
    trials it lacks (`planned_without_scores`), each with a warning."""
    names = [f.name for f in files.not_in_sweep]
    out, warns = dict(summary), list(summary["warnings"])
    if names:
        out["not_in_sweep"] = names
        warns.append(not_in_sweep_warning(names))
    if files.unscored:
        out["planned_without_scores"] = list(files.unscored)
        warns.append(unscored_warning(files.unscored))
    return {**out, "warnings": warns}


def report(run_dir: str | Path, cfg: ReportConfig | None = None, console=None, *,
           timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Build, write (summary.json, metrics.csv, figures/*.png, report.html) and render the report of one run directory.

    It covers the trials the sweep planned (scores/_PLAN.json); score files of others are named and left out.
    `timings`, when given, receives the seconds each step took."""
    from dfsweep.verdict.plots import make_figures  # matplotlib only once there is something to draw

    run = schema.RunDir(run_dir)
    with timed(timings, "read"):
        scores = collect_scores(run.scores)
        files = score_files(run.scores)
    with timed(timings, "load"):
        data = group_scores(scores)
    summary = with_plan(build_summary(run_dir, cfg, timings=timings, data=data), files)
    write_summary(summary, run.summary)
    write_metrics_csv(summary, run.metrics_csv)
    with timed(timings, "figures"):
        figures = make_figures(run.root, summary, figure_data(data, summary))
    with timed(timings, "html"):
        write_html(summary, figures, run.root / REPORT_HTML)
    render(summary, console)
    return summary


def compare(a: str | Path, b: str | Path, out: str | Path, console=None) -> dict[str, Any]:
    """compare_runs(a, b), written to `out` (JSON) and rendered."""
    cmp = compare_runs(a, b)
    write_summary(cmp, out)
    render_comparison(cmp, console)
    return cmp
