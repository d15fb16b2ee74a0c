"""Two runs side by side (`dfsweep report RUN_B --compare RUN_A`): the AUC across seeds per grain, arm and domain
in each, from each run's scores."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dfsweep import schema
from dfsweep.verdict import stats
from dfsweep.verdict.figure_data import clean_test_groups
from dfsweep.verdict.labels import GRAIN_ORDER, GRAIN_UNIT, auc_label, cell_order, grains_present
from dfsweep.verdict.scores import collect_scores
from dfsweep.verdict.summary import group_scores


def _arm_aucs(run: schema.RunDir) -> tuple[dict[tuple[str, str, str], dict[int, float]], dict[tuple[str, str], str]]:
    """AUC per (grain, arm, domain) and seed on the clean test split, and a hash of each (grain, domain)'s test
    sample_ids (video_ids at the video grain)."""
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    ids: dict[tuple[str, str], set[str]] = {}
    for x in clean_test_groups(group_scores(collect_scores(run.scores))):
        cells.setdefault((x.grain, x.arm, x.domain), {})[x.seed] = stats.auc(x.group.label, x.group.score)
        ids.setdefault((x.grain, x.domain), set()).update(x.group.sample_id.tolist())
    return cells, {k: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:16] for k, v in ids.items()}


def compare_runs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Mean ± sd (ddof=1) of the AUC across seeds per grain, arm and domain in run A and in run B, and B - A; a grain
    is only ever compared with the same grain.

    Computed from each run's scores/ (not its summary.json, which may be stale). The difference is of means, not a
    test: the runs need not share seeds or samples, and a warning says when their test samples differ.
    """
    run_a, run_b = schema.RunDir(a), schema.RunDir(b)
    (cells_a, ids_a), (cells_b, ids_b) = _arm_aucs(run_a), _arm_aucs(run_b)
    grains = grains_present({k[0] for k in (*cells_a, *cells_b)})
    several = len(grains) > 1
    rows, warns = [], []
    for grain, arm, domain in sorted(set(cells_a) | set(cells_b), key=lambda k: cell_order(*k)):
        row: dict[str, Any] = dict(arm=arm, domain=domain, auc_level=grain, metric=auc_label(grain))
        for side, cells in (("a", cells_a), ("b", cells_b)):
            by_seed = cells.get((grain, arm, domain), {})
            ms = stats.mean_sd([by_seed[s] for s in sorted(by_seed)])
            row.update({f"{side}_auc_mean": ms.mean if ms.n else None, f"{side}_auc_sd": ms.sd if ms.n else None,
                        f"{side}_n_seeds": ms.n, f"{side}_seeds": sorted(by_seed)})
        both = row["a_n_seeds"] and row["b_n_seeds"]
        row["diff"] = row["b_auc_mean"] - row["a_auc_mean"] if both else None
        if not both:
            warns.append(f"{arm} on {domain} is only in run {'A' if row['a_n_seeds'] else 'B'}"
                         + (f" ({auc_label(grain)})" if several else ""))
        rows.append(row)
    for key in sorted(set(ids_a) & set(ids_b), key=lambda k: (GRAIN_ORDER[k[0]], k[1])):
        if ids_a[key] != ids_b[key]:
            unit = GRAIN_UNIT[key[0]]
            warns.append(f"{key[1]}: the runs were scored on different test {unit}s"
                         + (f" ({auc_label(key[0])})" if several else "") + ": the difference mixes models and data")
    return dict(metric=auc_label(grains[0]), auc_level=grains[0], auc_levels=grains, a=str(run_a.root),
                b=str(run_b.root), split="test, clean",
                difference="mean AUC of B - mean AUC of A at the same level (a difference of means across seeds, not a test)",
                sd="sample standard deviation across seeds (ddof=1)", rows=rows, warnings=warns)
