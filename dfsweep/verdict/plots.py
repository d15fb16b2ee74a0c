"""The report's figures: PNGs under RUN_DIR/figures/, drawn from the summary and figure_data.FigureData (no statistics
here); thumbnails of the errors come from crops/ through dfsweep.crops.

One function per figure, each returning the path it wrote; `make_figures` writes them all. The same files give
the same bytes: matplotlib's Agg backend, fixed sizes and dpi, and no "Software" entry in the PNG metadata.
Every AUC label names its grain ("image-level AUC", "frame-level AUC", "video-level AUC"); a run with several grains
gets one row of panels per grain, never one panel pooling them. Perturbation axes, their direction and titles come
from the perturbations registry (labels.perturbation_axes).
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before pyplot could be imported by anything below

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dfsweep import crops, perturbations, schema  # noqa: E402
from dfsweep.storage import Location  # noqa: E402
from dfsweep.verdict.labels import (CONFUSION_PNG, ERRORS_PREFIX, FIGURES_DIR, GRAIN_UNIT, GRAINS,  # noqa: E402
                                    HISTOGRAMS_PNG, ROBUSTNESS_PNG, ROC_PNG, auc_label, format_mean_sd,
                                    format_number, grain_title, grains_of, perturbation_axes)
from dfsweep.verdict.figure_data import FigureData  # noqa: E402

DPI = 100
# A fixed PNG metadata dict: matplotlib would otherwise stamp its version ("Software"), which is not the data's.
PNG_METADATA = {"Software": None}
REAL_COLOR, FAKE_COLOR = "#1f77b4", "#d62728"


def _title(title: str, grain: str, grains: list[str]) -> str:
    return grain_title(title, grain, grains, sep=" · ")


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


def _grains(summary: dict[str, Any], present: set[str]) -> list[str]:
    """The grains a figure's data hold, in the summary's order (the summary's own when there are none)."""
    return ([g for g in grains_of(summary) if g in present] or sorted(present, key=GRAINS.index)
            or grains_of(summary))


def plot_roc(run_dir: str | Path, summary: dict[str, Any], figures: FigureData) -> Location:
    """ROC curves per domain (columns) and grain (rows): one thin line per seed, coloured by arm, the arm's mean AUC
    at that grain in the legend."""
    curves = figures.rocs
    grains = _grains(summary, {c.grain for c in curves})
    domains = sorted({c.domain for c in curves}) or ["(none)"]
    colors = _colors(sorted({c.arm for c in curves}))
    agg = _mean_auc(summary)
    fig, axes = _grid(len(grains), len(domains), 5.2, 5.0)
    for i, grain in enumerate(grains):
        for ax, domain in zip(axes[i], domains):
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            labelled = set()
            for c in (c for c in curves if (c.domain, c.grain) == (domain, grain)):
                label = None
                if c.arm not in labelled:
                    a = agg.get((c.arm, domain, grain), {})
                    label = (f"{c.arm}: mean {auc_label(grain)} {format_mean_sd(a.get('auc_mean'), a.get('auc_sd'))} "
                             f"({a.get('n_seeds', '?')} seeds)")
                    labelled.add(c.arm)
                ax.plot(c.fpr, c.tpr, color=colors[c.arm], lw=0.9, alpha=0.75, label=label)
            ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", title=_title(f"{domain} test, clean", grain, grains),
                   xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake called fake)")
            ax.grid(alpha=0.3)
            if labelled:
                ax.legend(loc="lower right", fontsize=7.5)
            else:
                ax.text(0.5, 0.5, "no test rows with both classes", ha="center", va="center")
    fig.suptitle(f"ROC curves ({', '.join(auc_label(g) for g in grains)}), one line per seed")
    return _save(fig, figures_dir(run_dir) / ROC_PNG)


def _arm_panels(summary: dict[str, Any], cells, width: float, height: float, missing: str):
    """A figure with a row of panels per (arm, grain) and a column per domain; panels without a cell say `missing`.
    Returns the figure, the grains, and (axes, arm, grain, domain, cell) for every panel that has a cell."""
    grains = _grains(summary, {c.grain for c in cells})
    arms = sorted({c.arm for c in cells}) or ["(none)"]
    domains = sorted({c.domain for c in cells}) or ["(none)"]
    by_key = {(c.arm, c.grain, c.domain): c for c in cells}
    rows = [(arm, grain) for arm in arms for grain in grains]
    fig, axes = _grid(len(rows), len(domains), width, height)
    panels = []
    for i, (arm, grain) in enumerate(rows):
        for j, domain in enumerate(domains):
            ax, c = axes[i, j], by_key.get((arm, grain, domain))
            if c is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, _title(f"{arm} · {domain}: {missing}", grain, grains), ha="center", va="center")
            else:
                panels.append((ax, arm, grain, domain, c))
    return fig, grains, panels


def plot_histograms(run_dir: str | Path, summary: dict[str, Any], figures: FigureData) -> Location:
    """Score histograms of real vs fake test samples per arm and grain (rows) and domain (columns), pooled over seeds;
    at the video grain, of the videos' mean scores."""
    agg = _mean_auc(summary)
    thr = summary["statistics"]["threshold"]
    bins = np.linspace(0, 1, 26)
    fig, grains, panels = _arm_panels(summary, figures.distributions, 4.6, 2.8, "no test rows")
    for ax, arm, grain, domain, c in panels:
        ax.hist(c.real, bins=bins, color=REAL_COLOR, alpha=0.55, label=f"real (n={len(c.real)})")
        ax.hist(c.fake, bins=bins, color=FAKE_COLOR, alpha=0.55, label=f"fake (n={len(c.fake)})")
        ax.axvline(thr, color="k", ls="--", lw=0.9)
        a = agg.get((arm, domain, grain), {})
        ax.set_title(f"{arm} · {domain} ({len(c.seeds)} seeds pooled)\nmean {auc_label(grain)} "
                     f"{format_number(a.get('auc_mean'))}", fontsize=9)
        score = "score (probability of fake)" if grain != "video" else "video score (mean of its frames')"
        ax.set(xlim=(0, 1), xlabel=score, ylabel=f"{GRAIN_UNIT[grain]}s")
        ax.legend(fontsize=7.5, loc="upper center")
    fig.suptitle(f"Confidence by class, test split, clean (threshold {thr})")
    return _save(fig, figures_dir(run_dir) / HISTOGRAMS_PNG)


def plot_confusion(run_dir: str | Path, summary: dict[str, Any], figures: FigureData) -> Location:
    """2x2 confusion matrices at the report threshold per arm and grain (rows) and domain (columns), summed over
    seeds."""
    thr = summary["statistics"]["threshold"]
    fig, grains, panels = _arm_panels(summary, figures.confusion, 3.6, 3.3, "no trials")
    for ax, arm, grain, domain, c in panels:
        counts = np.array([[c.tn, c.fp], [c.fn, c.tp]])
        per_class = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, per_class, out=np.zeros(counts.shape), where=per_class > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, k), n in np.ndenumerate(counts):
            name = (("TN", "FP"), ("FN", "TP"))[r][k]
            ax.text(k, r, f"{name}\n{n}", ha="center", va="center", fontsize=11,
                    color="white" if share[r, k] > 0.6 else "black")
        ax.set_xticks([0, 1], ["real", "fake"])
        ax.set_yticks([0, 1], ["real", "fake"])
        title = f"{arm} · {domain}\n{len(c.seeds)} seeds summed"
        if len(grains) > 1:
            title = f"{arm} · {domain} · {grain} level\n{len(c.seeds)} seeds summed, {GRAIN_UNIT[grain]}s"
        ax.set(xlabel="predicted", ylabel="true", title=title)
        ax.title.set_fontsize(9)
    fig.suptitle(f"Confusion at threshold {thr} (score >= {thr} is fake), test split, clean")
    return _save(fig, figures_dir(run_dir) / CONFUSION_PNG)


def plot_robustness(run_dir: str | Path, summary: dict[str, Any]) -> Location | None:
    """AUC against each perturbation kind's level (one column per kind, labels.perturbation_axes), per domain and
    grain (rows), one line per arm with its band; harsher levels to the right. None (and no file) when the run has
    no perturbed rows."""
    rows = summary["robustness"]
    if not rows:
        return None
    grains = _grains(summary, {r["auc_level"] for r in rows})
    panels = [(domain, grain) for domain in sorted({r["domain"] for r in rows}) for grain in grains]
    kinds = perturbation_axes(rows)
    colors = _colors(sorted({r["arm"] for r in rows}))
    clean = _mean_auc(summary)
    fig, axes = _grid(len(panels), len(kinds), 5.0, 3.6)
    for i, (domain, grain) in enumerate(panels):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            for arm in sorted(colors):
                sub = sorted((r for r in rows if (r["domain"], r["auc_level"], r["arm"], r["perturbation"])
                              == (domain, grain, arm, kind.kind)),
                             key=lambda r: perturbations.order_key(r["perturbation"], r["level"]))
                if not sub:
                    continue
                x = np.array([r["level"] for r in sub], float)
                mean = np.array([np.nan if r["auc_mean"] is None else r["auc_mean"] for r in sub], float)
                low = np.array([np.nan if r["auc_band_low"] is None else r["auc_band_low"] for r in sub], float)
                high = np.array([np.nan if r["auc_band_high"] is None else r["auc_band_high"] for r in sub], float)
                ax.plot(x, mean, "o-", color=colors[arm], lw=1.5, ms=4, label=f"{arm} ({sub[0]['n_seeds']} seeds)")
                if np.isfinite(low).any():
                    ax.fill_between(x, low, high, color=colors[arm], alpha=0.18, lw=0)
                ref = clean.get((arm, domain, grain), {}).get("auc_mean")
                if ref is not None and np.isfinite(ref):
                    ax.axhline(ref, color=colors[arm], ls=":", lw=1)
            if kind.harsher == "lower":
                ax.invert_xaxis()  # harsher to the right, as for every other kind
            low_y, high_y = ax.get_ylim()
            ax.set_ylim(low_y, min(high_y, 1.02))  # a t band may pass 1; an AUC cannot
            ax.set(xlabel=kind.axis_label, ylabel=auc_label(grain), title=f"{domain}: {auc_label(grain)} vs {kind.quantity}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7.5)
    fig.suptitle(f"Robustness: mean across seeds, {rows[0]['band_level']:.0%} t band; dotted: clean mean")
    return _save(fig, figures_dir(run_dir) / ROBUSTNESS_PNG)


@dataclass(frozen=True)
class ContactSheet:
    path: Location
    arm: str
    sample_ids: tuple[str, ...]  # in the order shown, most confident error first
    note: str | None  # why thumbnails are missing, when they are


def read_thumbnails(run_dir: str | Path, sample_ids: list[str]) -> tuple[dict[str, tuple[np.ndarray, str]], str | None]:
    """{sample_id: (RGB uint8 array, file name)} of the crops asked for (crops.read_crops reads only those rows), and
    a note saying why some or all are missing."""
    run = schema.RunDir(run_dir)
    if not sample_ids:
        return {}, None
    try:
        t = crops.read_crops(run, columns=["sample_id", "image", "path"], sample_ids=sample_ids)
    except FileNotFoundError:
        return {}, f"no crops in {run.crops}: thumbnails unavailable"
    except (OSError, pa.ArrowException) as exc:
        return {}, f"could not read crops in {run.crops} ({type(exc).__name__}: {exc}): thumbnails unavailable"
    out: dict[str, tuple[np.ndarray, str]] = {}
    for sid, img, path in zip(t.column("sample_id").to_pylist(), t.column("image").to_pylist(), t.column("path").to_pylist()):
        if sid in out:
            continue
        try:
            out[sid] = (crops.decode_png_rgb(img), Path(path).name)
        except ValueError:
            continue  # an undecodable image gets the same placeholder as a missing one
    missing = len(set(sample_ids) - set(out))
    return out, (f"{missing} of {len(set(sample_ids))} crops not found in {run.crops}" if missing else None)


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 11] + "…" + name[-10:]


def plot_contact_sheet(run_dir: str | Path, figures: FigureData, arm: str, *, k: int | None = None,
                       columns: int = 8) -> ContactSheet:
    """Thumbnails of the arm's k highest-confidence errors (FigureData.top_errors; all it holds by default), each with
    score, label and file name."""
    thr = figures.threshold
    errors = list(figures.top_errors.get(arm, ()))[:k]
    thumbs, note = read_thumbnails(run_dir, [e.sample_id for e in errors])
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
        img, name = thumbs.get(e.sample_id, (None, None))
        if img is None:
            ax.imshow(np.full((8, 8, 3), 0.85), vmin=0, vmax=1)
            ax.text(0.5, 0.5, "no crop", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.3")
            name = e.sample_id[:16]
        else:
            ax.imshow(img)
        ax.set_title(f"true {schema.LABELS[e.label]}, score {e.score:.3f}\n{_short(name)}\n"
                     f"{e.domain} · seed {e.seed}", fontsize=7.5)
    title = (f"{arm}: highest-confidence errors (test split, clean, threshold {thr}; "
             f"top {len(errors)} by |score − label|, seeds pooled)")
    if note:
        title += "\n" + textwrap.fill(note, 110)
    fig.suptitle(title, fontsize=10, color="black" if not note else "#a33")
    path = figures_dir(run_dir) / f"{ERRORS_PREFIX}{arm.replace('/', '-')}.png"
    return ContactSheet(_save(fig, path), arm, tuple(e.sample_id for e in errors), note)


def make_figures(run_dir: str | Path, summary: dict[str, Any], figures: FigureData) -> list[Location]:
    """Every figure of the report, in the order report.html shows them; PNGs left from an earlier build that this
    one did not write (say, robustness.png once the perturbed rows are gone) are removed."""
    paths = [plot_roc(run_dir, summary, figures), plot_histograms(run_dir, summary, figures),
             plot_confusion(run_dir, summary, figures), plot_robustness(run_dir, summary)]
    paths += [plot_contact_sheet(run_dir, figures, arm).path for arm in figures.arms]
    paths = [p for p in paths if p is not None]
    ours = {ROC_PNG, HISTOGRAMS_PNG, CONFUSION_PNG, ROBUSTNESS_PNG}
    for old in figures_dir(run_dir).glob("*.png"):
        if old not in paths and (old.name in ours or old.name.startswith(ERRORS_PREFIX)):
            old.unlink()
    return paths
