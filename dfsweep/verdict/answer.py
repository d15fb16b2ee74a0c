"""The answer first: from the across-seed tests, each candidate arm's verdict against the baseline (better / not shown /
worse), its rank among the candidates of a domain, and the verdict block of the summary that the console and
report.html open with, with the rule that decides and the few warnings that matter most.

It computes no statistic (summary.py and stats.py do); it decides, ranks and words. Arms are named by their `arm`
and found by role, never by a variant's name.
"""

from __future__ import annotations

import math
from typing import Any

from dfsweep.verdict.labels import BETTER, GRAIN_UNIT, NOT_SHOWN, UNDEFINED, WORSE, auc_label

# Below this many matched seeds the across-seed t-test is weak (2 seeds: df = 1) or undefined (1 seed).
MIN_SEEDS_FOR_TEST = 3
# Below this many matched seeds the seed-level share can only be k/n of a handful of seeds: a note says so.
MIN_SEEDS_FOR_SEED_SHARE = 5
# How many of a row's warnings the box shows (all of them are in the row, and in the validity warnings).
BOX_WARNINGS = 2
# The order in which a row's warnings are kept, most important first: first what undermines the verdict itself (an
# arm that collapsed to one score, so the comparison is with a broken model; too few seeds to test; a benchmark whose
# fakes carry a shortcut cue; a pairing on part of the samples), then what the verdict does not touch but a reader
# would act on (calibration: AUC fine, accuracy at the threshold not), then the coarseness of the seed share.
WARNING_PRIORITY = ("collapsed", "too_few_seeds", "shortcut", "different_samples", "calibration", "coarse_seed_share")
WARNING_ORDER = ("a row's warnings are kept in this order and the box shows the first "
                 f"{BOX_WARNINGS}: a collapsed arm (one score for every sample: the comparison is with a broken "
                 "model), too few seeds (the test itself is weak or undefined), a shortcut cue (the benchmark "
                 "may reward a cue, not the manipulation), different test samples (the pairing covers only the "
                 "common ones), calibration off (ranking fine, accuracy at the threshold near chance), a coarse seed "
                 "share (fewer than 5 seeds); every warning is also in the validity warnings")


def decide(p_holm: float | None, p_holm_less: float | None, alpha: float, *, ci_low: float | None,
           ci_high: float | None) -> str:
    """better when the Holm-adjusted p of H1 candidate > baseline is below alpha AND the hierarchical bootstrap CI of
    the mean Δ lies above 0; worse when the same holds the other way (H1 candidate < baseline, its own Holm family,
    and the CI below 0); not shown otherwise; undefined when the test could not be run.

    Two conditions because each covers one source of chance: the t-test across seeds covers the training's
    randomness on this test set (with features held fixed across seeds its variance can be tiny, so it alone would
    call a Δ of a few thousandths a finding), the hierarchical bootstrap (seeds, then test samples) the test set's
    sampling too."""
    if p_holm is None or math.isnan(p_holm):
        return UNDEFINED
    low = float("nan") if ci_low is None else ci_low
    high = float("nan") if ci_high is None else ci_high
    if p_holm < alpha and low > 0:
        return BETTER
    if p_holm_less is not None and not math.isnan(p_holm_less) and p_holm_less < alpha and high < 0:
        return WORSE
    return NOT_SHOWN


def ranks(values: list[float | None]) -> list[int | None]:
    """Competition ranks (1, 2, 2, 4) of `values`, largest first; None for a missing (None or nan) value."""
    ok = [v for v in values if v is not None and not math.isnan(v)]
    return [None if v is None or math.isnan(v) else 1 + sum(w > v for w in ok) for v in values]


def seed_share_note(n_seeds: int) -> str | None:
    """Why the seed-level share says little with few seeds (None from MIN_SEEDS_FOR_SEED_SHARE seeds on)."""
    if n_seeds >= MIN_SEEDS_FOR_SEED_SHARE:
        return None
    if n_seeds == 0:
        return "no matched seed: no seed share"
    return (f"{n_seeds} seed(s): the seed share can only be a multiple of 1/{n_seeds} (halves with ties), too few "
            f"to mean much (fewer than {MIN_SEEDS_FOR_SEED_SHARE})")


def rule_text(auc: str, alpha: float, ci: str = "95%") -> str:
    """The verdict's rule, for AUCs named `auc` ("image-level AUC")."""
    return (f"better: the one-tailed paired t-test across seeds of H1 candidate {auc} > baseline {auc}, Holm-adjusted "
            f"over the candidate arms of the domain, has p < α = {alpha}, and the {ci} hierarchical bootstrap CI of "
            f"the mean Δ (seeds, then test samples) lies above 0; worse: the same test of H1 candidate < baseline, "
            f"Holm-adjusted in its own family, has p < α and that CI lies below 0; otherwise not shown (undefined when "
            f"the test cannot be run: fewer than 2 seeds or no variance of Δ across them). The t-test covers the "
            f"training's randomness across seeds on this test set, the CI the test set's sampling as well: a Δ "
            f"consistent across seeds but within the test samples' noise is not shown. Each direction keeps its "
            f"family-wise error at most α, so a candidate no different from the baseline is called better or worse "
            f"with probability up to 2α")


def box_caption(grain: str, alpha: float, ci: str) -> str:
    """The verdict box's caption: the rule and what each column holds, in a few lines (the block's `rule`, `delta`,
    `probability_of_improvement` and `warning_order` say it in full)."""
    return (f"better: the one-tailed paired t-test across seeds (H1: candidate {auc_label(grain)} > baseline), "
            f"Holm-adjusted over the domain's candidate arms, has p < α = {alpha} and the CI of Δ lies above 0; worse: "
            "the same with H1: candidate < baseline (Holm'd in its own family) and the CI below 0; otherwise not "
            f"shown. Δ: mean over matched seeds, with its {ci} hierarchical bootstrap CI (seeds, then samples). p: of "
            "the direction claimed (not shown: of the direction of Δ). P(better): the share of matched seeds whose "
            "candidate AUC is higher · the mean over seeds of the share of paired samples the candidate ranks better "
            "(DeLong placements, fakes and reals weighted equally); ties ½. Warnings, most important first: collapsed "
            "arm, too few seeds, shortcut cue, different samples, calibration off, coarse seed share "
            f"(< {MIN_SEEDS_FOR_SEED_SHARE} seeds); all are in the validity warnings")


def delta_text(grain: str, ci: str, bootstrap_samples: int) -> str:
    auc = auc_label(grain)
    return (f"Δ: the mean over matched seeds (the same seed for both arms) of candidate {auc} − baseline {auc}; "
            f"CI: {ci} hierarchical bootstrap of that mean (seeds, then fakes and reals within each drawn seed, on "
            f"the samples both arms scored), B={bootstrap_samples}")


PROBABILITY_OF_IMPROVEMENT = (
    "P(better), seeds: the share of matched seeds (the same seed for both arms) whose candidate AUC is above the "
    "baseline's, ties ½ (with n seeds only a multiple of 1/n, halves with ties: a note below "
    f"{MIN_SEEDS_FOR_SEED_SHARE} seeds); samples: within each seed, the share of the paired test samples that the "
    "candidate places higher than the baseline does (a sample's DeLong placement is the share of the other class it "
    "is ranked correctly against, ties ½; placements tied across the models count ½), the fakes' and the reals' "
    "shares weighted equally as the AUC weighs the classes, then the mean over seeds. 0.5 = no more often better "
    "than worse; a share near 0.5 with a clear Δ means few samples moved, not no effect. Descriptive figures beside "
    "the mean Δ, not tests")


def _row_warnings(t: dict[str, Any], calibration: dict[tuple, tuple[int, int]], collapsed: dict[tuple, tuple[int, int]],
                  shortcuts: list[dict[str, Any]], threshold: float) -> list[dict[str, str]]:
    """A test row's warnings, in WARNING_PRIORITY order."""
    grain, domain = t["auc_level"], t["domain"]
    found: dict[str, list[str]] = {k: [] for k in WARNING_PRIORITY}
    n = t["n_pairs"]
    for arm in (t["candidate"], t["baseline"]):
        k, of = collapsed.get((grain, domain, arm), (0, 0))
        if k:
            found["collapsed"].append(f"collapsed: {arm} gives every sample nearly one score ({k}/{of} seeds)")
    if n < MIN_SEEDS_FOR_TEST:
        found["too_few_seeds"].append(f"only {n} seed(s): the t-test is weak or undefined")
    for s in shortcuts:
        if s["auc_level"] == grain and domain in s["domains"]:
            found["shortcut"].append(s["short"])
    if t["samples_differ_for_seeds"]:
        found["different_samples"].append(f"different {GRAIN_UNIT[grain]}s for seeds {t['samples_differ_for_seeds']}: "
                                          "paired on the common ones")
    for arm in (t["candidate"], t["baseline"]):
        off, of = calibration.get((grain, domain, arm), (0, 0))
        if off:
            found["calibration"].append(f"calibration off: {arm} ranks well, accuracy at {threshold} near chance "
                                        f"({off}/{of} seeds)")
    if t["seed_win_share_note"] and n >= MIN_SEEDS_FOR_TEST:  # below that the first warning says it already
        found["coarse_seed_share"].append(f"{n} seeds: the seed share can only be k/{n}")
    return [dict(kind=k, text=text) for k in WARNING_PRIORITY for text in found[k]]


def verdict_block(tests: list[dict[str, Any]], *, grain: str, alpha: float, ci: str, bootstrap_samples: int,
                  threshold: float, calibration: dict[tuple, tuple[int, int]],
                  collapsed: dict[tuple, tuple[int, int]], shortcuts: list[dict[str, Any]]) -> dict[str, Any]:
    """summary["verdict"]: one row per domain and candidate arm (against each baseline arm) at `grain` (the primary
    one), by domain, baseline and rank, with the rule, what Δ, its CI and the probabilities of improvement are, and
    how warnings are chosen.

    calibration: {(grain, domain, arm): (seeds whose calibration is off, seeds)}; collapsed: the same for seeds whose
    model gave every sample nearly one score; shortcuts: the shortcut findings,
    each with its auc_level, the domains it bears on and a short text.
    """
    rows = []
    at = sorted((t for t in tests if t["auc_level"] == grain),
                key=lambda t: (t["domain"], t["baseline"], t["rank"] is None, t["rank"] or 0, t["candidate"]))
    for t in at:
        worse = t["verdict"] == WORSE or (t["verdict"] != BETTER and t["mean_diff"] < 0)
        alternative, p = ("less", t["p_holm_less"]) if worse else ("greater", t["p_holm"])
        rows.append(dict(
            domain=t["domain"], candidate=t["candidate"], baseline=t["baseline"], rank=t["rank"], verdict=t["verdict"],
            mean_diff=t["mean_diff"], ci_low=t["hier_ci_low"], ci_high=t["hier_ci_high"], ci_level=t["hier_ci_level"],
            test=t["test"], alternative=alternative, p_holm=p, p_holm_better=t["p_holm"], p_holm_worse=t["p_holm_less"],
            holm_family=t["holm_family"], n_seeds=t["n_pairs"], seeds=t["seeds"],
            auc_mean_candidate=t["auc_mean_candidate"], auc_mean_baseline=t["auc_mean_baseline"],
            seed_win_share=t["seed_win_share"], seed_wins=t["seed_wins"], seed_ties=t["seed_ties"],
            seed_losses=t["seed_losses"], seed_win_share_note=t["seed_win_share_note"],
            sample_win_share=t["sample_win_share"],
            warnings=_row_warnings(t, calibration, collapsed, shortcuts, threshold)))
    empty = None if rows else ("no candidate arm was compared with a baseline arm at this level: the run needs an arm "
                               "of role baseline and one of role candidate, scored on the same domain")
    return dict(auc_level=grain, metric=auc_label(grain), alpha=alpha, rule=rule_text(auc_label(grain), alpha, ci),
                caption=box_caption(grain, alpha, ci),
                delta=delta_text(grain, ci, bootstrap_samples), probability_of_improvement=PROBABILITY_OF_IMPROVEMENT,
                shown_p=("the p shown is the Holm-adjusted p of the direction the verdict claims; for not shown, of "
                         "the direction the mean Δ points in (H1: Δ < 0 when it is negative)"),
                ranking="candidate arms ranked per domain and baseline by mean Δ, largest first (ties share a rank)",
                warning_priority=list(WARNING_PRIORITY), warnings_shown=BOX_WARNINGS, warning_order=WARNING_ORDER,
                rows=rows, empty=empty)
