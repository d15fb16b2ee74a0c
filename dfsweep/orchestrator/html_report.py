"""report.html: the summary and the figures in one self-contained file (inline CSS, PNGs as data URIs, no scripts).

It draws summary.json's content and computes nothing; every text goes through html.escape. No timestamp is written,
so the same summary and figures give the same bytes. Every AUC column and heading names its level; a run with several
levels (frames and videos) gets one table per level, never a table pooling them.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable

from dfsweep.orchestrator.plots import caption
from dfsweep.storage import Location, parse
from dfsweep.orchestrator.report import (LEVEL_MEANING, LEVEL_UNIT, _N_HEADER, _ci, _f, auc_label, levels_of,
                                         verdict_text)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
       margin: 24px auto; max-width: 1320px; padding: 0 16px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 6px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dce3;
     padding-bottom: 4px; }
.meta { color: #4a5263; margin: 2px 0; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 12.5px; }
th, td { border: 1px solid #d8dce3; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f1f3f7; } td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
.caption { color: #5b6475; font-size: 12px; margin: 2px 0 10px; }
.warn { background: #fff8e6; border: 1px solid #f0d48a; padding: 8px 14px; } .warn li { margin: 3px 0; }
figure { margin: 18px 0; } figure img { max-width: 100%; border: 1px solid #e3e6eb; }
figcaption { color: #4a5263; font-size: 12.5px; margin-top: 4px; }
.better { color: #1b7a33; font-weight: 600; } .none { color: #6b7280; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], *, left: int = 1) -> str:
    """A table whose first `left` columns are text (left-aligned) and the rest numbers."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _p(text: str, cls: str = "caption") -> str:
    return f'<p class="{cls}">{_e(text)}</p>'


def _levels_line(levels: list[str]) -> str:
    if levels == ["image"]:
        return "every AUC is image-level (one score per face crop)"
    return ("every AUC names its level: " + " and ".join(f"{lv}-level ({LEVEL_MEANING[lv]})" for lv in levels)
            + ", each in its own table, never pooled")


def _at(rows: list[dict], level: str) -> list[dict]:
    return [r for r in rows if r["auc_level"] == level]


def _h2(title: str, level: str, levels: list[str]) -> str:
    # A one-level run keeps the headings it had; with several levels every heading names its own.
    return f"<h2>{_e(title if len(levels) == 1 else f'{title} — {auc_label(level)}')}</h2>"


def _header(summary: dict[str, Any]) -> str:
    cfg = summary.get("config") or {}
    tr, sw = cfg.get("train", {}), cfg.get("sweep", {})
    st, counts = summary["statistics"], summary.get("counts") or {}
    lines = [f"run: {summary['run_dir']} · dfsweep {summary['dfsweep_version']}",
             f"model: Xception {tr.get('input_size_px', '?')} px, pixel range {tr.get('pixel_range', '?')}, weights "
             f"{Path(str(tr.get('weights', '?'))).name}; head {tr.get('head_epochs', '?')} epochs @ "
             f"{tr.get('head_lr', '?')}, V2 fine-tune {tr.get('finetune_epochs', '?')} epochs @ {tr.get('finetune_lr', '?')}",
             f"seeds: {sw.get('seeds', '?')} · {_levels_line(levels_of(summary))}, on test splits, clean unless a "
             "perturbation is named",
             f"statistics: {st['ci']}; {st['sd']}; {st['test']}; threshold {st['threshold']}, α = {st['alpha']}"]
    if counts:
        lines.append(f"inputs: {counts['inputs']} files; by status: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(counts["by_status"].items())))
        lines.append("crops: " + ", ".join(f"{k} {v}" for k, v in counts["crops_by_domain_split_label"].items()))
    return "<h1>dfsweep report</h1>" + "".join(_p(x, "meta") for x in lines)


def _trials(summary: dict[str, Any]) -> str:
    thr, levels, out = summary["statistics"]["threshold"], levels_of(summary), ""
    for level in levels:
        rows = [(r["trial_id"], r["domain"], f"{r['n']} ({r['n_real']}/{r['n_fake']})", _f(r["auc"]),
                 _ci(r["auc_ci_low"], r["auc_ci_high"]), _f(r["average_precision"]), _f(r["eer"]), _f(r["accuracy"]),
                 _f(r["f1"]), f"{r['tn']} {r['fp']} {r['fn']} {r['tp']}",
                 _f(r["val_threshold"]) if r["val_threshold_reason"] is None else f"— ({r['val_threshold_reason']})",
                 _f(r["accuracy_at_val_threshold"]))
                for r in _at(summary["trials"], level)]
        out += (_h2("Per trial (test split, clean)", level, levels)
                + _table(("trial", "domain", _N_HEADER[level], auc_label(level), "CI", "AP", "EER", f"acc@{thr}",
                          f"F1@{thr}", f"TN FP FN TP @{thr}", "val threshold", "acc@val threshold"), rows, left=2))
    return out + _p(f"CI: {summary['statistics']['ci']}. {summary['statistics']['per_trial']}. "
                    f"{summary['statistics']['val_threshold']}.")


def _aggregate(summary: dict[str, Any]) -> str:
    levels, out = levels_of(summary), ""
    for level in levels:
        rows = [(r["arm"], r["domain"], f"{r['n_seeds']} {r['seeds']}", f"{_f(r['auc_mean'])} ± {_f(r['auc_sd'])}",
                 f"{_f(r['accuracy_mean'])} ± {_f(r['accuracy_sd'])}") for r in _at(summary["aggregate"], level)]
        out += (_h2("Across seeds: mean ± sd (ddof=1)", level, levels)
                + _table(("variant/augmentation", "domain", "seeds", auc_label(level),
                          f"accuracy@{summary['statistics']['threshold']}"), rows, left=2))
    return out


def _tests(summary: dict[str, Any]) -> str:
    st, levels, out = summary["statistics"], levels_of(summary), ""
    alpha = st["alpha"]
    for level in levels:
        auc, tests = auc_label(level), _at(summary["tests"], level)
        rows = [(r["domain"], f"{r['candidate']} vs {r['baseline']}", r["n_pairs"], _f(r["mean_diff"], 4), _f(r["t"]),
                 r["df"], _f(r["p_value"], 4), _f(r.get("p_holm"), 4), verdict_text(r.get("p_holm"), alpha))
                for r in tests]
        out += (f"<h2>Is the candidate better than V1? (Δ {_e(auc)})</h2>"
                + _table(("domain", "candidate vs baseline", "pairs", "mean Δ", "t", "df", "p (one-sided)", "p Holm",
                          "verdict (Holm)"), rows, left=2)
                + _p(f"{st['test']}. {st['across_seeds']}."))
        rows = [(r["domain"], f"{r['candidate']} vs {r['baseline']}", _f(r["wilcoxon_statistic"], 1),
                 _f(r["wilcoxon_p"], 4) if r["wilcoxon_reason"] is None else f"not run: {r['wilcoxon_reason']}",
                 f"{_f(r['hier_mean_diff'], 4)} {_ci(r['hier_ci_low'], r['hier_ci_high'], 4)}") for r in tests]
        out += _table(("domain", "candidate vs baseline", "Wilcoxon W", "Wilcoxon p (one-sided)",
                       f"hierarchical bootstrap CI of mean Δ (seeds, then {LEVEL_UNIT[level]}s)"), rows, left=2)
    for level in levels:
        seed_tests = _at(summary["per_seed_tests"], level)
        if not seed_tests:
            continue
        rows = [(r["domain"], r["seed"], f"{r['candidate']} vs {r['baseline']}", r["n_paired"], _f(r["diff"], 4),
                 _f(r["delong_z"], 2), _f(r["delong_p"], 4), _ci(r["diff_ci_low"], r["diff_ci_high"], 4),
                 _f(r["prob_positive"])) for r in seed_tests]
        join = "video_id" if level == "video" else "sample_id"
        out += (_h2(f"Per seed: candidate vs V1 on the same {LEVEL_UNIT[level]}s (joined on {join})", level, levels)
                + _table(("domain", "seed", "candidate vs baseline", "paired n", f"Δ {auc_label(level)}", "DeLong z",
                          "DeLong p (one-sided)", "paired bootstrap CI of Δ", "P_boot(Δ>0)"), rows, left=3)
                + _p(f"{st['per_seed']}. P_boot(Δ>0) is a bootstrap probability, not a p-value."))
    return out


def _robustness(summary: dict[str, Any]) -> str:
    if not summary["robustness"]:
        return "<h2>Robustness</h2>" + _p("no perturbed test rows in this run")
    thr, out = summary["statistics"]["threshold"], ""
    for level in levels_of(summary):
        auc, sub = auc_label(level), _at(summary["robustness"], level)
        if not sub:
            continue
        rows = [(r["domain"], r["arm"], r["perturbation"], r["level"], r["n_seeds"],
                 f"{_f(r['auc_mean'])} {_ci(r['auc_band_low'], r['auc_band_high'])}",
                 f"{_f(r['accuracy_mean'])} {_ci(r['accuracy_band_low'], r['accuracy_band_high'])}") for r in sub]
        out += (f"<h2>Robustness: {_e(auc)} and accuracy@{_e(thr)} against perturbation, mean across seeds [band]</h2>"
                + _table(("domain", "variant/augmentation", "perturbation", "level", "seeds", auc, f"accuracy@{thr}"),
                         rows, left=3))
    return out + _p(summary["statistics"]["robustness"])


def _warnings(summary: dict[str, Any]) -> str:
    if not summary["warnings"]:
        return "<h2>Validity warnings</h2>" + _p("none")
    return ('<h2>Validity warnings</h2><div class="warn"><ul>'
            + "".join(f"<li>{_e(w)}</li>" for w in summary["warnings"]) + "</ul></div>")


def _figures(paths: Iterable, levels: list[str]) -> str:
    out = ["<h2>Figures</h2>"]
    for p in map(parse, paths):
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        out.append(f'<figure id="{_e(p.stem)}"><img alt="{_e(p.name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption><b>{_e(p.name)}</b>: {_e(caption(p, levels))}</figcaption></figure>")
    return "".join(out)


def render_html(summary: dict[str, Any], figure_paths: Iterable) -> str:
    body = "".join((_header(summary), _trials(summary), _aggregate(summary), _tests(summary), _robustness(summary),
                    _warnings(summary), _figures(figure_paths, levels_of(summary))))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>dfsweep report: {_e(Path(summary['run_dir']).name)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def write_html(summary: dict[str, Any], figure_paths: Iterable, path) -> Location:
    """Write report.html (one file, everything inline; a local path or a storage URI) and return where it is."""
    path = parse(path)
    path.write_text(render_html(summary, figure_paths))
    return path
