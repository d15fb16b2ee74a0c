"""Time `build_summary` at the paper's scale on synthetic scores; goal: under 10 s end to end.

    python bench/report.py [--bootstrap-samples 2000] [--repeat 1]

6 trials (v1/none and v2/paper, seeds 42, 123, 7) x 2 domains (source, target) x 9 conditions (clean, JPEG quality
95/80/60/40/20, blur kernel 3/5/9 px) x 300 test samples, plus 300 clean source val rows per trial; B = 2000.
Prints the total, the goal, and each step's share (the slowest first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfsweep import schema  # noqa: E402
from dfsweep.config import ReportConfig  # noqa: E402
from dfsweep.verdict.summary import build_summary  # noqa: E402

GOAL_S = 10.0
SEEDS = (42, 123, 7)
ARMS = (("v1", "none", 0.3), ("v2", "paper", 0.8))  # variant, augmentation, target separation
CONDITIONS = [("none", 0)] + [("jpeg", q) for q in (95, 80, 60, 40, 20)] + [("blur", k) for k in (3, 5, 9)]
N = 300


def write_scores(run: schema.RunDir) -> int:
    """One parquet file per trial; scores degrade with the perturbation's severity. Returns the number of rows."""
    run.scores.mkdir(parents=True, exist_ok=True)
    y = np.r_[np.ones(N // 2, np.int8), np.zeros(N // 2, np.int8)]
    rows = 0
    for variant, aug, target_shift in ARMS:
        for seed in SEEDS:
            rng = np.random.default_rng([seed, variant == "v2"])
            trial = f"{variant}-{aug}-s{seed}"
            parts = []
            for domain, split, shift, conditions in (("source", "val", 2.0, CONDITIONS[:1]),
                                                     ("source", "test", 2.0, CONDITIONS),
                                                     ("target", "test", target_shift, CONDITIONS)):
                base = rng.normal(0, 1, N)
                for pert, level in conditions:
                    severity = 0 if pert == "none" else (100 - level) / 100 if pert == "jpeg" else level / 10
                    logit = base + y * shift * (1 - 0.5 * severity) + rng.normal(0, 0.3 * severity, N)
                    parts.append(pa.table(dict(
                        trial_id=[trial] * N, variant=[variant] * N, augmentation=[aug] * N, seed=[seed] * N,
                        dataset=[domain] * N, domain=[domain] * N, split=[split] * N,
                        sample_id=[f"{domain}-{split}-{i}" for i in range(N)], label=y, perturbation=[pert] * N,
                        level=[level] * N, score=(1 / (1 + np.exp(-logit))).astype(np.float32)), schema=schema.scores_schema(video=False)))
            table = pa.concat_tables(parts)
            rows += table.num_rows
            pq.write_table(table, run.score_file(trial))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-samples", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1, help="time this many builds and report the fastest")
    args = ap.parse_args()
    cfg = ReportConfig(bootstrap_samples=args.bootstrap_samples)
    with tempfile.TemporaryDirectory() as tmp:
        run = schema.RunDir(tmp)
        rows = write_scores(run)
        best, best_steps = float("inf"), {}
        for _ in range(args.repeat):
            steps: dict[str, float] = {}
            start = time.perf_counter()
            summary = build_summary(run.root, cfg, timings=steps)
            total = time.perf_counter() - start
            if total < best:
                best, best_steps = total, steps
    print(f"build_summary: {rows} score rows, {len(summary['metrics'])} metric rows, "
          f"{len(summary['per_seed_tests'])} per-seed tests, B={cfg.bootstrap_samples}")
    print(f"total {best:.2f} s   goal < {GOAL_S:.0f} s   ({'met' if best < GOAL_S else 'NOT met'})")
    for step, sec in sorted(best_steps.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<15} {sec:6.2f} s  {sec / best:5.1%}")
    slowest = max(best_steps, key=best_steps.get)
    print(f"slowest step: {slowest}, {best_steps[slowest] / best:.0%} of the total")


if __name__ == "__main__":
    main()
