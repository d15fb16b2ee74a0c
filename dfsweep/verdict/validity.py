"""The validity warnings of a summary: a collapsed model (one score for every sample), one class called, ranking fine
but calibration off, too few seeds, wide per-seed CIs, shortcut cues (a diagnostic arm strong in-domain or beating a
baseline on the target). Each warning about an AUC names its grain. Plain data in, strings (and the shortcut
findings the verdict box uses) out.
"""

from __future__ import annotations

from dfsweep import schema
from dfsweep.config import ReportConfig
from dfsweep.verdict.labels import GRAIN_ORDER, GRAIN_UNIT, auc_label

BASELINE, CANDIDATE, DIAGNOSTIC = schema.ROLES
# A diagnostic arm (a shortcut check, not a detector) that is this good in-domain says the data carry a shortcut.
DIAGNOSTIC_IN_DOMAIN_AUC = 0.8
# "Beats the baseline on the target" only counts where the diagnostic itself is off chance: two near-0.5 AUCs say
# nothing.
DIAGNOSTIC_TARGET_MIN_AUC = 0.6

# "Ranking fine, calibration off": the paper's baseline ranked target samples well yet called them all real at 0.5.
CALIBRATION_MIN_AUC = 0.7
CALIBRATION_MAX_ACCURACY = 0.55
DOMINANT_SHARE = 0.9  # one class "dominates the predictions" when at least this share of samples is called it
# A per-seed paired-bootstrap CI of ΔAUC wider than this that still contains 0 cannot tell the arms apart.
WIDE_DIFF_CI = 0.1
# A model whose test scores all lie within this of each other has collapsed: a diverged or dead network gives one
# output whatever the input (measured: 40 backbone layers fine-tuned at lr 1e-3 with half of each batch from the target
# scored every sample 0.49757 +- 4e-6, AUC 0.500). Its AUC then ranks float noise; a working detector's scores
# spread over far more than this even near chance.
COLLAPSED_SCORE_RANGE = 1e-3


def _calibration_off(t: dict) -> bool:
    """"Ranking fine, calibration off": a good AUC, yet accuracy near chance at the threshold, one class called."""
    share = t["predicted_fake_share"]
    return (t["auc"] >= CALIBRATION_MIN_AUC and t["accuracy"] <= CALIBRATION_MAX_ACCURACY
            and max(share, 1 - share) >= DOMINANT_SHARE)


def _collapsed(t: dict) -> bool:
    """The trial gave (nearly) one score to every test sample of the domain."""
    return t["score_range"] < COLLAPSED_SCORE_RANGE


def _arm_counts(trials: list[dict], flagged) -> dict[tuple[str, str, str], tuple[int, int]]:
    """{(grain, domain, arm): (trials `flagged`, trials)}."""
    out: dict[tuple[str, str, str], tuple[int, int]] = {}
    for t in trials:
        k, n = out.get((t["auc_level"], t["domain"], t["arm"]), (0, 0))
        out[t["auc_level"], t["domain"], t["arm"]] = (k + flagged(t), n + 1)
    return out


def calibration_counts(trials: list[dict]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """{(grain, domain, arm): (trials whose calibration is off, trials)}."""
    return _arm_counts(trials, _calibration_off)


def collapsed_counts(trials: list[dict]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """{(grain, domain, arm): (trials that collapsed, trials)}."""
    return _arm_counts(trials, _collapsed)


def warnings_for(trials: list[dict], aggregates: list[dict], tests: list[dict], seed_tests: list[dict],
                 cfg: ReportConfig) -> list[str]:
    """Validity warnings; each one about an AUC names its grain (image-grain warnings read as before grains existed)."""
    warns = []
    for t in trials:
        if _collapsed(t):
            same = ("the same score" if t["score_range"] == 0 else
                    f"nearly the same score (range {t['score_range']:.1e})")
            warns.append(f"{t['trial_id']} gives every {t['domain']} test {GRAIN_UNIT[t['auc_level']]} {same}: "
                         "the model collapsed in training (a diverged or dead "
                         f"network; a learning rate too high?), so its {auc_label(t['auc_level'])} {t['auc']:.3f} ranks "
                         "float noise, not what the method learns")
    for t in trials:
        if t["predicts_one_class"]:
            called = "fake" if t["tp"] + t["fp"] else "real"
            warns.append(f"{t['trial_id']} calls every {t['domain']} test {GRAIN_UNIT[t['auc_level']]} {called} at "
                         f"threshold {t['threshold']}: its accuracy says nothing about ranking "
                         f"({auc_label(t['auc_level'])} {t['auc']:.3f})")
    for t in trials:
        share = t["predicted_fake_share"]
        if _calibration_off(t):
            called, frac = ("fake", share) if share >= 0.5 else ("real", 1 - share)
            at_val = (f"no source-val threshold ({t['val_threshold_reason']})" if t["val_threshold_reason"] else
                      f"at the source-val threshold {t['val_threshold']:.3f} accuracy is {t['accuracy_at_val_threshold']:.3f}")
            warns.append(f"{t['trial_id']} on {t['domain']}: ranking fine, calibration off — {auc_label(t['auc_level'])} "
                         f"{t['auc']:.3f} but accuracy {t['accuracy']:.3f} at threshold {t['threshold']}, "
                         f"{frac:.0%} of {GRAIN_UNIT[t['auc_level']]}s called {called}; {at_val}")
    warns += _shortcut_warnings(aggregates)
    no_val = sorted({t["trial_id"] for t in trials if t["val_threshold_reason"] is not None})
    if no_val:
        warns.append(f"no source-val threshold for {', '.join(no_val)}: their *_at_val_threshold fields are empty")
    few = {}  # seeds do not depend on the grain: one warning per arm and domain
    for a in aggregates:
        if a["n_seeds"] < 3:
            few.setdefault((a["arm"], a["domain"]), a["n_seeds"])
    for (arm, domain), n in few.items():
        warns.append(f"{arm} on {domain} has {n} seed(s): fewer than 3, the across-seed test is weak or undefined")
    for t in tests:
        if t["samples_differ_for_seeds"]:
            unit = GRAIN_UNIT[t["auc_level"]]
            same = [s for s in seed_tests if s["seed"] in t["samples_differ_for_seeds"]
                    and (s["auc_level"], s["domain"], s["candidate"], s["baseline"])
                    == (t["auc_level"], t["domain"], t["candidate"], t["baseline"])]
            detail = "; ".join(f"seed {s['seed']}: {s['n_paired']} paired, {s['n_only_candidate']} only in "
                               f"{t['candidate']}, {s['n_only_baseline']} only in {t['baseline']}" for s in same)
            of_grain = "" if t["auc_level"] == "image" else f" of {t['metric']}"
            warns.append(f"{t['candidate']} and {t['baseline']} were scored on different {unit}s for seeds "
                         f"{t['samples_differ_for_seeds']} on {t['domain']}: paired tests{of_grain} use the common "
                         f"{unit}s only ({detail})")
    for s in seed_tests:
        if s["n_label_disagree"]:
            of_grain = "" if s["auc_level"] == "image" else f" of {s['metric']}"
            warns.append(f"{s['candidate_trial']} and {s['baseline_trial']} on {s['domain']} disagree on the label of "
                         f"{s['n_label_disagree']} {GRAIN_UNIT[s['auc_level']]}(s): left out of the paired tests{of_grain}")
    for t in trials:
        if t["auc_ci_high"] - t["auc_ci_low"] > 0.2:
            warns.append(f"{t['trial_id']} on {t['domain']}: {auc_label(t['auc_level'])} CI [{t['auc_ci_low']:.3f}, "
                         f"{t['auc_ci_high']:.3f}] is wider than 0.2: too few test {GRAIN_UNIT[t['auc_level']]}s to "
                         "conclude much")
    cells = sorted({(s["auc_level"], s["domain"]) for s in seed_tests}, key=lambda k: (GRAIN_ORDER[k[0]], k[1]))
    for grain, domain in cells:
        sub = [s for s in seed_tests if (s["auc_level"], s["domain"]) == (grain, domain)]
        wide = [s for s in sub
                if s["diff_ci_low"] < 0 < s["diff_ci_high"] and s["diff_ci_high"] - s["diff_ci_low"] > WIDE_DIFF_CI]
        if wide:
            which = ", ".join(f"{s['candidate']} vs {s['baseline']} seed {s['seed']}" for s in wide)
            warns.append(f"{domain}: the paired-bootstrap {cfg.ci_level:.0%} CI of Δ {auc_label(grain)} contains 0 "
                         f"and is wider than {WIDE_DIFF_CI} for {len(wide)} of {len(sub)} per-seed comparisons ({which}): "
                         "CIs too wide to conclude per seed")
    return warns


def shortcuts(aggregates: list[dict]) -> list[dict]:
    """The data carry a shortcut when a diagnostic arm is strong in-domain or beats a baseline on the target (per
    grain). Each finding: its auc_level, the domains whose comparisons it bears on (a source cue: every domain, since
    every arm learned from the source; a target cue: the target), its warning and a short text for the verdict box."""
    out = []
    for grain in sorted({a["auc_level"] for a in aggregates}, key=GRAIN_ORDER.get):
        label = auc_label(grain)
        at = [a for a in aggregates if a["auc_level"] == grain]
        bases = {arm: {a["domain"]: a for a in at if a["arm"] == arm} for arm in sorted({a["arm"] for a in at if
                                                                                        a["role"] == BASELINE})}
        for arm in sorted({a["arm"] for a in at if a["role"] == DIAGNOSTIC}):
            diag = {a["domain"]: a for a in at if a["arm"] == arm}
            if "source" in diag and diag["source"]["auc_mean"] >= DIAGNOSTIC_IN_DOMAIN_AUC:
                out.append(dict(
                    auc_level=grain, domains=sorted({a["domain"] for a in at}),
                    text=f"shortcut: the diagnostic arm {arm} (a shortcut check, not a detector) reaches {label} "
                         f"{diag['source']['auc_mean']:.3f} on the source test: the fakes carry a cue a detector can "
                         "learn instead of the manipulation",
                    short=f"shortcut cue: the diagnostic {arm} reaches {diag['source']['auc_mean']:.3f} on the source "
                          "test"))
            for base, by_domain in bases.items():
                if ("target" in diag and "target" in by_domain
                        and diag["target"]["auc_mean"] > by_domain["target"]["auc_mean"]
                        and diag["target"]["auc_mean"] >= DIAGNOSTIC_TARGET_MIN_AUC):
                    out.append(dict(
                        auc_level=grain, domains=["target"],
                        text=f"shortcut: the diagnostic arm {arm} beats the baseline {base} on the target ({label} "
                             f"{diag['target']['auc_mean']:.3f} vs {by_domain['target']['auc_mean']:.3f}): the "
                             "target's fakes differ by something simpler than the manipulation",
                        short=f"shortcut cue: the diagnostic {arm} beats {base} on the target "
                              f"({diag['target']['auc_mean']:.3f} vs {by_domain['target']['auc_mean']:.3f})"))
    return out


def _shortcut_warnings(aggregates: list[dict]) -> list[str]:
    return [s["text"] for s in shortcuts(aggregates)]
