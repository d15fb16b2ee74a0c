"""The summary's tables as text: title, column headers, rows of formatted cells and a caption, built once for both the
console (console.py) and report.html (html.py), which only draw them.

The per-trial metric columns come from summary.METRIC_COLUMNS, the perturbation levels' meaning from the
perturbations registry; with several grains every table is drawn once per grain and its title names the grain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfsweep.verdict.labels import (GRAIN_UNIT, MISSING, auc_label, confidence_text, format_interval, format_mean_sd,
                                    format_number, format_signed, grain_title, grains_of, levels_text,
                                    perturbation_axes, verdict_text)
from dfsweep.verdict.summary import METRIC_COLUMNS, VAL_THRESHOLD_FIELDS

ROBUSTNESS_TITLE = "Robustness"


@dataclass(frozen=True)
class TextTable:
    """One table, every cell already a string."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    text_columns: int = 1  # the first columns hold text (left-aligned), the rest numbers (right-aligned)
    caption: str = ""
    empty: str = ""  # what report.html says when there are no rows; without it an empty table is left out


@dataclass(frozen=True)
class VerdictRow:
    """One candidate's verdict against the baseline, every field already a string."""

    domain: str
    rank: str
    versus: str  # "<candidate> vs <baseline>"
    verdict: str  # better / not shown / worse / undefined (labels.VERDICTS): the console and report.html colour it
    delta: str  # "+0.286"
    ci: str  # "[+0.158, +0.407]"
    direction: str  # "Δ>0" or "Δ<0": the alternative whose Holm p is shown
    p: str  # "0.0071"
    seeds: str
    seed_share: str  # "3/3": P(better) over seeds
    sample_share: str  # "0.79": P(better) over samples
    warnings: tuple[str, ...]  # the first ones, by the stated priority
    more_warnings: int  # how many more the row has (all are in the validity warnings)


@dataclass(frozen=True)
class VerdictBox:
    """The verdict box the report opens with: its rows, the columns report.html heads them with, and the caption that
    states the rule. The console draws each row as a few lines (it must read at 80 columns), report.html as a table."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[VerdictRow, ...]
    caption: str
    empty: str  # why there are no rows


def _rows_of_grain(rows: list[dict], grain: str) -> list[dict]:
    return [r for r in rows if r["auc_level"] == grain]


def _versus(r: dict) -> str:
    return f"{r['candidate']} vs {r['baseline']}"


def _signed_interval(low: float | None, high: float | None, decimals: int = 3) -> str:
    return f"[{format_signed(low, decimals)}, {format_signed(high, decimals)}]"


def _seed_share(r: dict) -> str:
    """"2/3": the seed-level share as wins (+ ½ per tie) of the matched seeds, which also says how coarse it is."""
    n = r["seed_wins"] + r["seed_ties"] + r["seed_losses"]
    return f"{r['seed_wins'] + r['seed_ties'] / 2:g}/{n}" if n else MISSING


def verdict_cells(row: VerdictRow) -> tuple[str, ...]:
    """A row as the cells of VerdictBox.columns (report.html's table)."""
    more = f" (+{row.more_warnings} more below)" if row.more_warnings else ""
    return (row.domain, row.rank, row.versus, row.verdict, f"{row.delta} {row.ci}", f"{row.direction}: {row.p}",
            row.seeds, f"{row.seed_share} · {row.sample_share}",
            "; ".join(row.warnings) + more if row.warnings else "none")


def verdict_box(summary: dict[str, Any]) -> VerdictBox | None:
    """summary["verdict"] as the box the console and report.html open with (None for a summary without one): per
    domain and candidate, the verdict, Δ with its CI, the test and its Holm p, the seeds, the probabilities of
    improvement and the first warnings; the caption states the rule."""
    v = summary.get("verdict")
    if v is None:
        return None
    shown = v["warnings_shown"]
    rows = tuple(VerdictRow(
        r["domain"], MISSING if r["rank"] is None else str(r["rank"]), f"{r['candidate']} vs {r['baseline']}",
        r["verdict"], format_signed(r["mean_diff"]), _signed_interval(r["ci_low"], r["ci_high"]),
        "Δ<0" if r["alternative"] == "less" else "Δ>0", format_number(r["p_holm"], 4), str(r["n_seeds"]),
        _seed_share(r), format_number(r["sample_win_share"], 2), tuple(w["text"] for w in r["warnings"][:shown]),
        max(len(r["warnings"]) - shown, 0)) for r in v["rows"])
    columns = ("domain", "rank", "candidate vs baseline", "verdict",
               f"Δ {v['metric']} [{confidence_text(summary['statistics'])} CI]", "p Holm (paired t)", "seeds",
               "P(better) seeds · samples", "warnings, most important first")
    return VerdictBox(f"Verdict: is the candidate better than the baseline? ({v['metric']})", columns, rows,
                      f"{v['caption']}.", v["empty"] or "")


def ranking_tables(summary: dict[str, Any]) -> list[TextTable]:
    """The candidate arms ranked per domain and baseline by mean Δ, one table per grain, with both tails' Holm p, the
    verdict and the probabilities of improvement."""
    st, out = summary["statistics"], []
    for grain in grains_of(summary):
        auc = auc_label(grain)
        rows = sorted(_rows_of_grain(summary["tests"], grain),
                      key=lambda r: (r["domain"], r["baseline"], r["rank"] is None, r["rank"] or 0, r["candidate"]))
        out.append(TextTable(
            f"Ranking of the candidate arms by mean Δ {auc} against the baseline",
            ("domain", "rank", "candidate vs baseline", "seeds", "AUC candidate", "AUC baseline", "mean Δ",
             f"{confidence_text(st)} CI of mean Δ", "p Holm (Δ>0)", "p Holm (Δ<0)", "verdict",
             "P(better seed)", "P(better sample)"),
            tuple((r["domain"], MISSING if r["rank"] is None else str(r["rank"]), _versus(r), str(r["n_pairs"]),
                   format_number(r["auc_mean_candidate"]), format_number(r["auc_mean_baseline"]),
                   format_signed(r["mean_diff"], 4), _signed_interval(r["hier_ci_low"], r["hier_ci_high"], 4),
                   format_number(r["p_holm"], 4), format_number(r["p_holm_less"], 4), r["verdict"],
                   f"{_seed_share(r)} = {format_number(r['seed_win_share'], 2)}",
                   format_number(r["sample_win_share"], 3)) for r in rows), 3,
            f"AUC: {auc}, the mean over the matched seeds; CI of mean Δ: the hierarchical bootstrap (seeds, then "
            f"samples) of the tables below. {st['verdict']}. {st['probability_of_improvement']}."))
    return out


def per_trial_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, grains = summary["statistics"], grains_of(summary)
    shown = [c for c in METRIC_COLUMNS if c.show != "csv"]
    ci = f"{confidence_text(st)} CI"
    out = []
    for grain in grains:
        headers = tuple(c.title(grain=grain, ci=ci, threshold=st["threshold"]) for c in shown)
        rows = tuple((r["trial_id"], r["domain"], *(c.cell(r) for c in shown)) for r in _rows_of_grain(summary["trials"], grain))
        out.append(TextTable(grain_title("Per trial (test split, clean)", grain, grains), ("trial", "domain", *headers),
                             rows, 2, f"CI: {st['ci']}. {st['per_trial']}."))
    return out


def val_threshold_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, grains = summary["statistics"], grains_of(summary)
    out = []
    for grain in grains:
        rows = []
        for r in _rows_of_grain(summary["trials"], grain):
            if r["val_threshold_reason"] is not None:
                rows.append((r["trial_id"], r["domain"], f"— ({r['val_threshold_reason']})", *("—",) * 5))
                continue
            at = {f: r[f"{f}_at_val_threshold"] for f in VAL_THRESHOLD_FIELDS}
            rows.append((r["trial_id"], r["domain"], format_number(r["val_threshold"]),
                         *(format_number(at[f]) for f in ("accuracy", "precision", "recall", "f1")),
                         " ".join(str(at[f]) for f in ("tn", "fp", "fn", "tp"))))
        out.append(TextTable(
            grain_title("Per trial at the threshold chosen on source val (its EER point), test split, clean", grain,
                        grains),
            ("trial", "domain", "val threshold", "accuracy", "precision", "recall", "F1", "TN FP FN TP"), tuple(rows), 2,
            f"{st['val_threshold']}."))
    return out


def aggregate_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, grains = summary["statistics"], grains_of(summary)
    return [TextTable(grain_title("Across seeds: mean ± sd (ddof=1)", grain, grains),
                      ("variant/augmentation", "role", "domain", "seeds", auc_label(grain), f"accuracy@{st['threshold']}"),
                      tuple((r["arm"], r.get("role", ""), r["domain"], f"{r['n_seeds']} {r['seeds']}",
                             format_mean_sd(r["auc_mean"], r["auc_sd"]),
                             format_mean_sd(r["accuracy_mean"], r["accuracy_sd"]))
                            for r in _rows_of_grain(summary["aggregate"], grain)), 3, st["sd"])
            for grain in grains]


def per_seed_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, out = summary["statistics"], []
    for grain in grains_of(summary):
        join = "video_id" if grain == "video" else "sample_id"
        out.append(TextTable(
            f"Per seed: candidate vs baseline on the same {GRAIN_UNIT[grain]}s (joined on {join}), Δ {auc_label(grain)}",
            ("domain", "seed", "candidate vs baseline", "paired n", "Δ", "DeLong z", "DeLong p (one-sided)",
             "paired bootstrap CI of Δ", "P_boot(Δ>0)", "P(better sample)"),
            tuple((r["domain"], str(r["seed"]), _versus(r), str(r["n_paired"]), format_number(r["diff"], 4),
                   format_number(r["delong_z"], 2), format_number(r["delong_p"], 4),
                   format_interval(r["diff_ci_low"], r["diff_ci_high"], 4), format_number(r["prob_positive"]),
                   format_number(r.get("sample_win_share")))
                  for r in _rows_of_grain(summary["per_seed_tests"], grain)), 3,
            f"{st['per_seed']}. P_boot(Δ>0): share of paired bootstrap resamples with Δ > 0 — a bootstrap probability, "
            "not a p-value. P(better sample): the share of the paired samples the candidate places higher than the "
            "baseline (DeLong placements, ties ½), fakes and reals weighted equally."))
    return out


def t_test_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, grains = summary["statistics"], grains_of(summary)
    at_grain = "" if len(grains) == 1 else " at this level"
    return [TextTable(
        f"Is the candidate better than the baseline? one-tailed paired t-test across seeds (H1: Δ {auc_label(grain)} > 0)",
        ("domain", "candidate vs baseline", "pairs", "mean Δ", "t", "df", "p (one-sided)", "p Holm", "verdict (Holm)"),
        tuple((r["domain"], _versus(r), str(r["n_pairs"]), format_number(r["mean_diff"], 4), format_number(r["t"]),
               str(r["df"]), format_number(r["p_value"], 4), format_number(r.get("p_holm"), 4),
               verdict_text(r.get("p_holm"), st["alpha"], r.get("p_holm_less")))
              for r in _rows_of_grain(summary["tests"], grain)), 2,
        f"p Holm: adjusted over the candidate arms of a domain{at_grain}; the verdict uses it (worse: the other tail, "
        f"H1: Δ < 0, Holm'd in its own family; its p is in the ranking). {st['test']}.")
        for grain in grains]


def more_views_tables(summary: dict[str, Any]) -> list[TextTable]:
    st = summary["statistics"]
    out = []
    for grain in grains_of(summary):
        rows = []
        for r in _rows_of_grain(summary["tests"], grain):
            wp = (format_number(r["wilcoxon_p"], 4) if r["wilcoxon_reason"] is None
                  else f"not run: {r['wilcoxon_reason']}")
            if r["wilcoxon_reason"] is None and r.get("wilcoxon_n_zero"):  # say the p rests on fewer seeds
                wp += f" ({r['wilcoxon_n_pairs']} pairs; {r['wilcoxon_n_zero']} with zero difference left out)"
            rows.append((r["domain"], _versus(r), format_number(r["wilcoxon_statistic"], 1), wp,
                         f"{format_number(r['hier_mean_diff'], 4)} "
                         f"{format_interval(r['hier_ci_low'], r['hier_ci_high'], 4)}"))
        out.append(TextTable(f"Across seeds, two more views of the mean Δ {auc_label(grain)}",
                             ("domain", "candidate vs baseline", "Wilcoxon W", "Wilcoxon p (one-sided)",
                              f"hierarchical bootstrap CI of the mean Δ (seeds, then {GRAIN_UNIT[grain]}s)"),
                             tuple(rows), 2, f"{st['across_seeds']}."))
    return out


def robustness_tables(summary: dict[str, Any]) -> list[TextTable]:
    st, rows = summary["statistics"], summary["robustness"]
    if not rows:
        return [TextTable(ROBUSTNESS_TITLE, (), (), empty="no perturbed test rows in this run")]
    caption = f"{st['robustness']}. {levels_text(perturbation_axes(rows))}."
    out = []
    for grain in grains_of(summary):
        auc = auc_label(grain)
        out.append(TextTable(
            f"{ROBUSTNESS_TITLE}: {auc} and accuracy@{st['threshold']} against perturbation, mean across seeds "
            f"[{confidence_text(st)} t band]",
            ("domain", "variant/augmentation", "perturbation", "level", "seeds", auc, f"accuracy@{st['threshold']}"),
            tuple((r["domain"], r["arm"], r["perturbation"], str(r["level"]), str(r["n_seeds"]),
                   f"{format_number(r['auc_mean'])} {format_interval(r['auc_band_low'], r['auc_band_high'])}",
                   f"{format_number(r['accuracy_mean'])} "
                   f"{format_interval(r['accuracy_band_low'], r['accuracy_band_high'])}")
                  for r in _rows_of_grain(rows, grain)), 3, caption))
    return out


def arms_table(summary: dict[str, Any]) -> list[TextTable]:
    """What each arm is: its role and grid point (augmentation, unfrozen layers, adapt share, fine-tuning, the split
    its epochs were chosen on), from the sweep's plan; empty cells where the run's plan does not say (older runs)."""
    rows = []
    for a in summary.get("arms") or []:
        tunes = a["role"] == "candidate"
        fine = (f"{a['finetune_epochs']} @ {a['finetune_lr']:g}" if tunes and "finetune_epochs" in a else
                MISSING if tunes else "")
        rows.append((a["arm"], a["role"], a["augmentation"], a.get("selection_meaning", MISSING),
                     str(a.get("unfreeze_layers", MISSING)),
                     format_number(a["adapt_share"], 2) if "adapt_share" in a else MISSING, fine, str(len(a["seeds"]))))
    if not rows:
        return []
    return [TextTable("Arms: what each one is", ("arm", "role", "augmentation", "epochs chosen on", "unfrozen layers",
                                                 "adapt share", "fine-tune epochs @ lr", "seeds"), tuple(rows), 4,
                      "unfrozen layers: the last backbone layers fine-tuned (0: the head only); adapt share: the share "
                      "of each fine-tuning batch drawn from the target's adapt split; test data never choose an epoch")]


def report_tables(summary: dict[str, Any]) -> list[TextTable]:
    """Every table of the report after the verdict box (verdict_box), in the order the console and report.html show
    them."""
    return [*ranking_tables(summary), *arms_table(summary), *per_trial_tables(summary), *val_threshold_tables(summary),
            *aggregate_tables(summary), *per_seed_tables(summary), *t_test_tables(summary), *more_views_tables(summary),
            *robustness_tables(summary)]


def comparison_tables(cmp: dict[str, Any]) -> list[TextTable]:
    """compare_runs' result, one table per grain."""

    def cell(r: dict, side: str) -> str:
        if not r[f"{side}_n_seeds"]:
            return "—"
        return f"{format_mean_sd(r[f'{side}_auc_mean'], r[f'{side}_auc_sd'])} ({r[f'{side}_n_seeds']} seeds)"

    out = []
    for grain in cmp.get("auc_levels") or [cmp["auc_level"]]:
        rows = tuple((r["arm"], r["domain"], cell(r, "a"), cell(r, "b"), "—" if r["diff"] is None else f"{r['diff']:+.3f}")
                     for r in cmp["rows"] if r.get("auc_level", grain) == grain)
        out.append(TextTable(f"{auc_label(grain)}, {cmp['split']}: mean ± sd (ddof=1) across seeds",
                             ("variant/augmentation", "domain", "A", "B", "Δ (B − A)"), rows, 2,
                             f"A = {cmp['a']}\nB = {cmp['b']}"))
    return out
