"""The report's figures: PNGs under RUN_DIR/figures/, drawn from data that report.py computes (no statistics here).

One function per figure, each returning the path it wrote; `make_figures` writes them all. The same files give
the same bytes: matplotlib's Agg backend, fixed sizes and dpi, and no "Software" entry in the PNG metadata.
Every AUC label names its level ("image-level AUC", "frame-level AUC", "video-level AUC"); a run with several levels
gets one row of panels per level, never one panel pooling them.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before pyplot could be imported by anything below

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dfsweep import schema  # noqa: E402
from dfsweep.storage import Location  # noqa: E402
from dfsweep.orchestrator.report import (AUC_LEVELS, CONTACT_SHEET_K, FIGURES_DIR, LEVEL_UNIT, arms_of,  # noqa: E402
                                         auc_label, confusion_data, levels_of, roc_data, score_distributions,
                                         top_errors)

DPI = 100
# A fixed PNG metadata dict: matplotlib would otherwise stamp its version ("Software"), which is not the data's.
PNG_METADATA = {"Software": None}
ROC_PNG = "roc.png"
HISTOGRAMS_PNG = "histograms.png"
CONFUSION_PNG = "confusion.png"
ROBUSTNESS_PNG = "robustness.png"
ERRORS_PREFIX = "errors_"  # errors_<variant>-<augmentation>.png, one contact sheet per arm
_PERTURBATION_AXES = {"jpeg": "JPEG quality (lower is harsher)", "blur": "blur kernel, px (larger is harsher)"}
_KIND_NAMES = {"jpeg": "JPEG quality", "blur": "blur kernel"}
REAL_COLOR, FAKE_COLOR = "#1f77b4", "#d62728"

# What each figure shows, by file name (report.html prints these under the figures); {auc} is the level(s) of the run.
CAPTIONS = {
    ROC_PNG: "ROC curves, test split, clean: one thin line per seed, one colour per variant/augmentation arm; the "
             "legend gives the arm's mean {auc} ± sd (ddof=1) across seeds.",
    HISTOGRAMS_PNG: "Score distributions (probability of fake) of real and fake test samples, clean, per arm and domain, "
                    "pooled over seeds; the dashed line is the report threshold.",
    CONFUSION_PNG: "Confusion matrices at the report threshold (a score >= threshold is called fake), test split, clean, "
                   "counts summed over seeds; colour is the share of the true class.",
    ROBUSTNESS_PNG: "{auc} against JPEG quality and blur kernel, mean across seeds with the summary's t band; the "
                    "dotted line is the arm's clean mean.",
    ERRORS_PREFIX: "Highest-confidence errors of one arm (test split, clean, pooled over seeds): the misclassified samples "
                   "with the largest |score − label|, each once, with its worst seed.",
}
# Added to every caption of a run with several levels.
LEVELS_NOTE = (" One row of panels per level ({levels}); a video's score is the mean of its frames' scores; levels are "
               "never pooled.")
ERRORS_FRAMES_NOTE = " Errors are frames (each has a crop), not videos."


def _auc_words(levels: list[str]) -> str:
    """"image-level AUC" for one level; "frame-level AUC or video-level AUC (as each panel says)" for several."""
    if len(levels) == 1:
        return auc_label(levels[0])
    return " or ".join(auc_label(lv) for lv in levels) + " (as each panel says)"


def caption(path: str | Path, levels: list[str] | None = None) -> str:
    """The caption of a figure file, naming the AUC level(s) of the run (`levels`, primary first; image by default)."""
    levels = list(levels or ["image"])
    name = Path(str(path)).name  # a local path or a storage URI
    key = ERRORS_PREFIX if name.startswith(ERRORS_PREFIX) else name
    if key not in CAPTIONS:
        return name
    text = CAPTIONS[key].format(auc=_auc_words(levels))
    if key == ERRORS_PREFIX:
        return text + (ERRORS_FRAMES_NOTE if "frame" in levels else "")
    if len(levels) > 1:
        text += LEVELS_NOTE.format(levels=", ".join(auc_label(lv) for lv in levels))
    return text


def _level_title(title: str, level: str, levels: list[str]) -> str:
    # A one-level run keeps the titles it had; with several levels every panel names its own.
    return title if len(levels) == 1 else f"{title} · {auc_label(level)}"


def figures_dir(run_dir: str | Path | Location) -> Location:
    return schema.RunDir(run_dir).root / FIGURES_DIR


def _save(fig: Figure, path: Location) -> Location:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png", metadata=PNG_METADATA)
    path.write_bytes(buf.getvalue())
    return path


def _colors(arms: list[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10"]
    return {arm: cmap(i % 10) for i, arm in enumerate(sorted(arms))}


def _grid(n_rows: int, n_cols: int, w: float, h: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * n_cols, h * n_rows + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _mean_auc(summary: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(a["arm"], a["domain"], a["auc_level"]): a for a in summary["aggregate"]}


def _levels(summary: dict[str, Any], *rows: list[dict]) -> list[str]:
    """The levels the figure's rows hold, in the summary's order (the summary's own when there are no rows)."""
    present = {r["auc_level"] for sub in rows for r in sub}
    return [lv for lv in levels_of(summary) if lv in present] or sorted(present, key=AUC_LEVELS.index) or levels_of(summary)


def _num(x: Any, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def plot_roc(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table) -> Location:
    """ROC curves per domain (columns) and AUC level (rows): one thin line per seed, coloured by arm, the arm's mean
    AUC at that level in the legend."""
    curves = roc_data(scores)
    levels = _levels(summary, curves)
    domains = sorted({c["domain"] for c in curves}) or ["(none)"]
    colors = _colors(sorted({c["arm"] for c in curves}))
    agg = _mean_auc(summary)
    fig, axes = _grid(len(levels), len(domains), 5.2, 5.0)
    for i, level in enumerate(levels):
        for ax, domain in zip(axes[i], domains):
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            labelled = set()
            for c in (c for c in curves if (c["domain"], c["auc_level"]) == (domain, level)):
                arm = c["arm"]
                label = None
                if arm not in labelled:
                    a = agg.get((arm, domain, level), {})
                    label = (f"{arm}: mean {auc_label(level)} {_num(a.get('auc_mean'))} ± {_num(a.get('auc_sd'))} "
                             f"({a.get('n_seeds', '?')} seeds)")
                    labelled.add(arm)
                ax.plot(c["fpr"], c["tpr"], color=colors[arm], lw=0.9, alpha=0.75, label=label)
            ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal",
                   title=_level_title(f"{domain} test, clean", level, levels),
                   xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake called fake)")
            ax.grid(alpha=0.3)
            if labelled:
                ax.legend(loc="lower right", fontsize=7.5)
            else:
                ax.text(0.5, 0.5, "no test rows with both classes", ha="center", va="center")
    fig.suptitle(f"ROC curves ({', '.join(auc_label(lv) for lv in levels)}), one line per seed")
    return _save(fig, figures_dir(run_dir) / ROC_PNG)


def plot_histograms(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table) -> Location:
    """Score histograms of real vs fake test samples per arm and AUC level (rows) and domain (columns), pooled over
    seeds; at video level, of the videos' mean scores."""
    cells = score_distributions(scores)
    levels = _levels(summary, cells)
    arms = sorted({c["arm"] for c in cells}) or ["(none)"]
    rows = [(arm, level) for arm in arms for level in levels]
    domains = sorted({c["domain"] for c in cells}) or ["(none)"]
    by_key = {(c["arm"], c["auc_level"], c["domain"]): c for c in cells}
    agg = _mean_auc(summary)
    thr = summary["statistics"]["threshold"]
    bins = np.linspace(0, 1, 26)
    fig, axes = _grid(len(rows), len(domains), 4.6, 2.8)
    for i, (arm, level) in enumerate(rows):
        for j, domain in enumerate(domains):
            ax, c = axes[i, j], by_key.get((arm, level, domain))
            if c is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, _level_title(f"{arm} · {domain}: no test rows", level, levels), ha="center",
                        va="center")
                continue
            ax.hist(c["real"], bins=bins, color=REAL_COLOR, alpha=0.55, label=f"real (n={len(c['real'])})")
            ax.hist(c["fake"], bins=bins, color=FAKE_COLOR, alpha=0.55, label=f"fake (n={len(c['fake'])})")
            ax.axvline(thr, color="k", ls="--", lw=0.9)
            a = agg.get((arm, domain, level), {})
            ax.set_title(f"{arm} · {domain} ({len(c['seeds'])} seeds pooled)\nmean {auc_label(level)} "
                         f"{_num(a.get('auc_mean'))}", fontsize=9)
            score = "score (probability of fake)" if level != "video" else "video score (mean of its frames')"
            ax.set(xlim=(0, 1), xlabel=score, ylabel=f"{LEVEL_UNIT[level]}s")
            ax.legend(fontsize=7.5, loc="upper center")
    fig.suptitle(f"Confidence by class, test split, clean (threshold {thr})")
    return _save(fig, figures_dir(run_dir) / HISTOGRAMS_PNG)


def plot_confusion(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table | None = None) -> Location:
    """2x2 confusion matrices at the report threshold per arm and AUC level (rows) and domain (columns), summed over
    seeds."""
    cells = confusion_data(summary)
    levels = _levels(summary, cells)
    arms = sorted({c["arm"] for c in cells}) or ["(none)"]
    rows = [(arm, level) for arm in arms for level in levels]
    domains = sorted({c["domain"] for c in cells}) or ["(none)"]
    by_key = {(c["arm"], c["auc_level"], c["domain"]): c for c in cells}
    thr = summary["statistics"]["threshold"]
    fig, axes = _grid(len(rows), len(domains), 3.6, 3.3)
    for i, (arm, level) in enumerate(rows):
        for j, domain in enumerate(domains):
            ax, c = axes[i, j], by_key.get((arm, level, domain))
            if c is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, _level_title(f"{arm} · {domain}: no trials", level, levels), ha="center", va="center")
                continue
            counts = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
            rows = counts.sum(axis=1, keepdims=True)
            share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (r, k), n in np.ndenumerate(counts):
                name = (("TN", "FP"), ("FN", "TP"))[r][k]
                ax.text(k, r, f"{name}\n{n}", ha="center", va="center", fontsize=11,
                        color="white" if share[r, k] > 0.6 else "black")
            ax.set_xticks([0, 1], ["real", "fake"])
            ax.set_yticks([0, 1], ["real", "fake"])
            title = f"{arm} · {domain}\n{len(c['seeds'])} seeds summed"
            if len(levels) > 1:
                title = f"{arm} · {domain} · {level} level\n{len(c['seeds'])} seeds summed, {LEVEL_UNIT[level]}s"
            ax.set(xlabel="predicted", ylabel="true", title=title)
            ax.title.set_fontsize(9)
    fig.suptitle(f"Confusion at threshold {thr} (score >= {thr} is fake), test split, clean")
    return _save(fig, figures_dir(run_dir) / CONFUSION_PNG)


def plot_robustness(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table | None = None) -> Location | None:
    """AUC against JPEG quality and blur kernel, per domain and AUC level (rows), one line per arm with its band;
    None (and no file) when the run has no perturbed rows."""
    rows = summary["robustness"]
    if not rows:
        return None
    levels = _levels(summary, rows)
    panels = [(domain, level) for domain in sorted({r["domain"] for r in rows}) for level in levels]
    kinds = [k for k in _PERTURBATION_AXES if any(r["perturbation"] == k for r in rows)]
    kinds += sorted({r["perturbation"] for r in rows} - set(kinds))
    colors = _colors(sorted({r["arm"] for r in rows}))
    clean = _mean_auc(summary)
    fig, axes = _grid(len(panels), len(kinds), 5.0, 3.6)
    for i, (domain, level) in enumerate(panels):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            for arm in sorted(colors):
                sub = sorted((r for r in rows if (r["domain"], r["auc_level"], r["arm"], r["perturbation"])
                              == (domain, level, arm, kind)), key=lambda r: r["level"])
                if not sub:
                    continue
                x = np.array([r["level"] for r in sub], float)
                mean = np.array([np.nan if r["auc_mean"] is None else r["auc_mean"] for r in sub], float)
                low = np.array([np.nan if r["auc_band_low"] is None else r["auc_band_low"] for r in sub], float)
                high = np.array([np.nan if r["auc_band_high"] is None else r["auc_band_high"] for r in sub], float)
                ax.plot(x, mean, "o-", color=colors[arm], lw=1.5, ms=4, label=f"{arm} ({sub[0]['n_seeds']} seeds)")
                if np.isfinite(low).any():
                    ax.fill_between(x, low, high, color=colors[arm], alpha=0.18, lw=0)
                ref = clean.get((arm, domain, level), {}).get("auc_mean")
                if ref is not None and np.isfinite(ref):
                    ax.axhline(ref, color=colors[arm], ls=":", lw=1)
            if kind == "jpeg":
                ax.invert_xaxis()  # harsher to the right, as for blur
            low_y, high_y = ax.get_ylim()
            ax.set_ylim(low_y, min(high_y, 1.02))  # a t band may pass 1; an AUC cannot
            ax.set(xlabel=_PERTURBATION_AXES.get(kind, f"{kind} level"), ylabel=auc_label(level),
                   title=f"{domain}: {auc_label(level)} vs {_KIND_NAMES.get(kind, kind)}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7.5)
    level = rows[0]["band_level"]
    fig.suptitle(f"Robustness: mean across seeds, {level:.0%} t band; dotted: clean mean")
    return _save(fig, figures_dir(run_dir) / ROBUSTNESS_PNG)


@dataclass(frozen=True)
class ContactSheet:
    path: Location
    arm: str
    sample_ids: tuple[str, ...]  # in the order shown, most confident error first
    note: str | None  # why thumbnails are missing, when they are


def read_thumbnails(run_dir: str | Path, sample_ids: list[str]) -> tuple[dict[str, tuple[np.ndarray, str]], str | None]:
    """{sample_id: (RGB array, file name)} of the crops asked for, read with a filter (only those rows), and a note
    saying why some or all are missing."""
    run = schema.RunDir(run_dir)
    if not sample_ids:
        return {}, None
    if not run.crops.glob("*.parquet"):
        return {}, f"no crops in {run.crops}: thumbnails unavailable"
    try:
        t = run.crops.read_parquet(columns=["sample_id", "image", "path"],
                                   filters=[("sample_id", "in", sorted(set(sample_ids)))])
    except (OSError, pa.ArrowException) as exc:
        return {}, f"could not read crops in {run.crops} ({type(exc).__name__}: {exc}): thumbnails unavailable"
    out: dict[str, tuple[np.ndarray, str]] = {}
    for sid, img, path in zip(t.column("sample_id").to_pylist(), t.column("image").to_pylist(), t.column("path").to_pylist()):
        if sid in out:
            continue
        try:
            out[sid] = (mpimg.imread(io.BytesIO(img), format="png"), Path(path).name)
        except (OSError, ValueError, SyntaxError):
            continue  # an undecodable image gets the same placeholder as a missing one
    missing = len(set(sample_ids) - set(out))
    return out, (f"{missing} of {len(set(sample_ids))} crops not found in {run.crops}" if missing else None)


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 11] + "…" + name[-10:]


def plot_contact_sheet(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table, arm: str, *,
                       k: int = CONTACT_SHEET_K, columns: int = 8) -> ContactSheet:
    """Thumbnails of the arm's k highest-confidence errors (report.top_errors), each with score, label, file name."""
    thr = summary["statistics"]["threshold"]
    errors = top_errors(scores, arm, k=k, threshold=thr)
    thumbs, note = read_thumbnails(run_dir, [e["sample_id"] for e in errors])
    n_cols = max(1, min(columns, len(errors)))
    n_rows = max(1, -(-len(errors) // n_cols))
    fig = Figure(figsize=(max(1.9 * n_cols, 6.0), 2.45 * n_rows + 0.9), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    if not errors:
        axes[0].text(0.5, 0.5, f"no misclassified test samples at threshold {thr}", ha="center", va="center",
                     transform=axes[0].transAxes)
    for ax, e in zip(axes, errors):
        img, name = thumbs.get(e["sample_id"], (None, None))
        if img is None:
            ax.imshow(np.full((8, 8, 3), 0.85), vmin=0, vmax=1)
            ax.text(0.5, 0.5, "no crop", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.3")
            name = e["sample_id"][:16]
        else:
            ax.imshow(img)
        ax.set_title(f"true {schema.LABELS[e['label']]}, score {e['score']:.3f}\n{_short(name)}\n"
                     f"{e['domain']} · seed {e['seed']}", fontsize=7.5)
    title = (f"{arm}: highest-confidence errors (test split, clean, threshold {thr}; "
             f"top {len(errors)} by |score − label|, seeds pooled)")
    if note:
        title += "\n" + textwrap.fill(note, 110)
    fig.suptitle(title, fontsize=10, color="black" if not note else "#a33")
    path = figures_dir(run_dir) / f"{ERRORS_PREFIX}{arm.replace('/', '-')}.png"
    return ContactSheet(_save(fig, path), arm, tuple(e["sample_id"] for e in errors), note)


def make_figures(run_dir: str | Path, summary: dict[str, Any], scores: pa.Table) -> list[Location]:
    """Every figure of the report, in the order report.html shows them; PNGs left from an earlier build that this
    one did not write (say, robustness.png once the perturbed rows are gone) are removed."""
    paths = [plot_roc(run_dir, summary, scores), plot_histograms(run_dir, summary, scores),
             plot_confusion(run_dir, summary, scores), plot_robustness(run_dir, summary, scores)]
    paths += [plot_contact_sheet(run_dir, summary, scores, arm).path for arm in arms_of(scores)]
    paths = [p for p in paths if p is not None]
    ours = {ROC_PNG, HISTOGRAMS_PNG, CONFUSION_PNG, ROBUSTNESS_PNG}
    for old in figures_dir(run_dir).glob("*.png"):
        if old not in paths and (old.name in ours or old.name.startswith(ERRORS_PREFIX)):
            old.unlink()
    return paths
