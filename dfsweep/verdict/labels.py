"""The verdict's wording, written once for the console, report.html and the figures: how an AUC is named, what each
grain (image / frame / video) means and counts, how numbers and intervals print, the report's header lines, the
figures' file names and captions, and the perturbation axes taken from the perturbations registry.

Every AUC names its grain: scores without a video_id are still images, scores with one are video frames, and a
video's score is the mean of its frames'. Grains differ by several points, so they are shown apart, never pooled.
Nothing here computes a statistic; it only says things about the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dfsweep import perturbations

# The grains an AUC is computed at, in the order every output lists them: still images (video_id ""), video frames,
# and videos (the mean of their frames' scores; only where there are frames). The first present is the primary one.
GRAINS = ("image", "frame", "video")
GRAIN_ORDER = {grain: i for i, grain in enumerate(GRAINS)}
GRAIN_MEANING = {"image": "one score per still image's face crop",
                 "frame": "one score per video frame's face crop",
                 "video": "a video's score is the mean of its frames' scores"}
# What one row of a grain counts, in tables and figures ("sample" for images, as before grains existed).
GRAIN_UNIT = {"image": "sample", "frame": "frame", "video": "video"}
COUNT_HEADER = {"image": "n (real/fake)", "frame": "frames (real/fake)", "video": "videos (real/fake)"}
MISSING = "—"  # how a number that is not there (None, nan) prints

# Figures: RUN_DIR/FIGURES_DIR/<name>; report.html prints CAPTIONS under them. {auc} is the grain(s) of the run,
# {perturbations} the quantities of the perturbation kinds present.
FIGURES_DIR = "figures"
ROC_PNG = "roc.png"
HISTOGRAMS_PNG = "histograms.png"
CONFUSION_PNG = "confusion.png"
ROBUSTNESS_PNG = "robustness.png"
ERRORS_PREFIX = "errors_"  # errors_<variant>-<augmentation>.png, one contact sheet per arm
CAPTIONS = {
    ROC_PNG: "ROC curves, test split, clean: one thin line per seed, one colour per variant/augmentation arm; the "
             "legend gives the arm's mean {auc} ± sd (ddof=1) across seeds.",
    HISTOGRAMS_PNG: "Score distributions (probability of fake) of real and fake test samples, clean, per arm and domain, "
                    "pooled over seeds; the dashed line is the report threshold.",
    CONFUSION_PNG: "Confusion matrices at the report threshold (a score >= threshold is called fake), test split, clean, "
                   "counts summed over seeds; colour is the share of the true class.",
    ROBUSTNESS_PNG: "{auc} against {perturbations}, mean across seeds with the summary's t band; the dotted line is the "
                    "arm's clean mean.",
    ERRORS_PREFIX: "Highest-confidence errors of one arm (test split, clean, pooled over seeds): the misclassified samples "
                   "with the largest |score − label|, each once, with its worst seed.",
}
# Added to every caption of a run with several grains.
GRAINS_NOTE = (" One row of panels per level ({grains}); a video's score is the mean of its frames' scores; levels are "
               "never pooled.")
ERRORS_FRAMES_NOTE = " Errors are frames (each has a crop), not videos."


def auc_label(grain: str) -> str:
    """"image-level AUC", "frame-level AUC" or "video-level AUC": how every output names an AUC."""
    return f"{grain}-level AUC"


def grains_of(summary: dict[str, Any]) -> list[str]:
    """The grains a summary holds, primary first (a summary from before `auc_levels` has one, `auc_level`)."""
    return list(summary.get("auc_levels") or [summary["auc_level"]])


def grain_title(title: str, grain: str, grains: list[str], *, sep: str = " — ") -> str:
    """A one-grain run keeps the titles it had; with several grains every title names its own."""
    return title if len(grains) == 1 else f"{title}{sep}{auc_label(grain)}"


def auc_words(grains: list[str]) -> str:
    """"image-level AUC" for one grain; "frame-level AUC or video-level AUC (as each panel says)" for several."""
    if len(grains) == 1:
        return auc_label(grains[0])
    return " or ".join(auc_label(g) for g in grains) + " (as each panel says)"


def grains_sentence(grains: list[str]) -> str:
    """How the header says which AUCs a run holds."""
    if grains == ["image"]:
        return "every AUC is image-level (one score per face crop)"
    return ("every AUC names its level: " + " and ".join(f"{g}-level ({GRAIN_MEANING[g]})" for g in grains)
            + ", each in its own table, never pooled")


def format_number(x: float | int | None, decimals: int = 3) -> str:
    """x at `decimals` places; MISSING for None or nan."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:.{decimals}f}"


def format_interval(low: float | None, high: float | None, decimals: int = 3) -> str:
    """"[low, high]"."""
    return f"[{format_number(low, decimals)}, {format_number(high, decimals)}]"


def format_mean_sd(mean: float | None, sd: float | None, decimals: int = 3) -> str:
    """"mean ± sd"."""
    return f"{format_number(mean, decimals)} ± {format_number(sd, decimals)}"


def confidence_text(statistics: dict[str, Any]) -> str:
    """"95%": the coverage of the summary's intervals, as its `ci` sentence begins."""
    return statistics["ci"].split()[0]


def format_signed(x: float | int | None, decimals: int = 3) -> str:
    """x with its sign ("+0.112", "-0.004"); MISSING for None or nan."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:+.{decimals}f}"


# The verdict of a candidate arm against the baseline (summary["verdict"], the tests' `verdict`): the words every
# output uses; answer.decide says which applies.
BETTER, NOT_SHOWN, WORSE, UNDEFINED = "better", "not shown", "worse", "undefined"
VERDICTS = (BETTER, NOT_SHOWN, WORSE, UNDEFINED)


def verdict_text(p_holm: float | None, alpha: float, p_holm_less: float | None = None) -> str:
    """The verdict line of an across-seed test, from its Holm-adjusted p (the console and report.html say the same);
    with `p_holm_less` (the other tail, H1: candidate < baseline, Holm'd in its own family) a worse candidate says
    so."""
    if p_holm is None or math.isnan(p_holm):
        return "undefined (too few seeds or zero variance)"
    if p_holm < alpha:
        return f"better at α={alpha}"
    if p_holm_less is not None and not math.isnan(p_holm_less) and p_holm_less < alpha:
        return f"worse at α={alpha} (H1: Δ < 0)"
    return f"not shown at α={alpha}"


def header_lines(summary: dict[str, Any]) -> list[str]:
    """The lines the console panel and report.html open with: run, model, seeds and grains, statistics, inputs."""
    cfg = summary.get("config") or {}
    train, sweep = cfg.get("train", {}), cfg.get("sweep", {})
    st, counts = summary["statistics"], summary.get("counts") or {}
    lines = [f"run: {summary['run_dir']} · dfsweep {summary['dfsweep_version']}",
             f"model: Xception {train.get('input_size_px', '?')} px, pixel range {train.get('pixel_range', '?')}, "
             f"weights {Path(str(train.get('weights', '?'))).name}; head {train.get('head_epochs', '?')} epochs @ "
             f"{train.get('head_lr', '?')}, fine-tune {train.get('finetune_epochs', '?')} epochs @ "
             f"{train.get('finetune_lr', '?')} (variants that fine-tune)",
             f"seeds: {sweep.get('seeds', '?')} · {grains_sentence(grains_of(summary))}, on test splits, clean unless "
             "a perturbation is named",
             f"statistics: {st['ci']}; {st['sd']}; {st['test']}; threshold {st['threshold']}, α = {st['alpha']}"]
    if counts:
        lines.append(f"inputs: {counts['inputs']} files; by status: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(counts["by_status"].items())))
        lines.append("crops: " + ", ".join(f"{k} {v}" for k, v in counts["crops_by_domain_split_label"].items()))
    return lines


@dataclass(frozen=True)
class PerturbationAxis:
    """How tables and figures name one perturbation kind and its level (from perturbations.PERTURBATIONS)."""

    kind: str  # the scores' `perturbation`
    quantity: str  # "JPEG quality"; the kind itself for a kind the registry does not know (an old file)
    axis_label: str  # "JPEG quality (lower is harsher)"
    harsher: str | None  # "lower" or "higher"; None when unknown


def perturbation_axes(rows: Iterable[dict[str, Any]]) -> list[PerturbationAxis]:
    """The perturbation kinds of `rows` (robustness or metric rows; clean rows ignored) in perturbations.order_key
    order: the registry's kinds first, in its order, then unknown kinds by name."""
    kinds = {r["perturbation"] for r in rows} - {perturbations.NONE}
    out = []
    for kind in sorted(kinds, key=lambda k: (perturbations.order_key(k, 0)[0], k)):
        p = perturbations.PERTURBATIONS.get(kind)
        out.append(PerturbationAxis(kind, kind, f"{kind} level", None) if p is None else
                   PerturbationAxis(kind, p.quantity, p.axis_label, p.harsher))
    return out


def perturbations_sentence(axes: list[PerturbationAxis]) -> str:
    """"JPEG quality, blur kernel and Gaussian noise sigma"."""
    names = [a.quantity for a in axes]
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


def levels_text(axes: list[PerturbationAxis]) -> str:
    """What a perturbation's `level` means, for the tables' captions: "level: jpeg = JPEG quality (...); ..."."""
    return "level: " + "; ".join(f"{a.kind} = {a.axis_label}" for a in axes)


def caption(path: str | Path, grains: list[str] | None = None, axes: list[PerturbationAxis] | None = None) -> str:
    """The caption of a figure file, naming the grain(s) of the run (`grains`, primary first; image by default) and,
    for the robustness figure, the perturbation kinds it shows (`axes`)."""
    grains = list(grains or ["image"])
    name = Path(str(path)).name  # a local path or a storage URI
    key = ERRORS_PREFIX if name.startswith(ERRORS_PREFIX) else name
    if key not in CAPTIONS:
        return name
    text = CAPTIONS[key].format(auc=auc_words(grains),
                                perturbations=perturbations_sentence(axes or []) or "perturbation level")
    if key == ERRORS_PREFIX:
        return text + (ERRORS_FRAMES_NOTE if "frame" in grains else "")
    if len(grains) > 1:
        text += GRAINS_NOTE.format(grains=", ".join(auc_label(g) for g in grains))
    return text


def cell_order(grain: str, arm: str, domain: str) -> tuple:
    """How (grain, arm, domain) cells are listed everywhere: by grain, then domain, then arm."""
    return GRAIN_ORDER[grain], domain, arm


def grains_present(grains: set[str]) -> list[str]:
    """The grains in GRAINS order; an empty run counts as image grain, as every run did before grains existed."""
    return sorted(grains, key=GRAIN_ORDER.get) or ["image"]
