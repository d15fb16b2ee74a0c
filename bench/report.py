"""Time `build_summary` on synthetic scores, today's statistics beside the slow reference they replaced.

    python bench/report.py                                 # the paper's scale: 300 test samples per domain, < 10 s
    python bench/report.py --samples 50000                 # the field's scale: goal < 120 s and < 4 GiB on 2 cores
    python bench/report.py --samples 50000 --reference none

9 trials (v1/none the baseline, v2/none and v2/paper the candidates; seeds 42, 123, 7) x 2 domains (source, target)
x 9 conditions (clean, JPEG quality 95/80/60/40/20, blur kernel 3/5/9 px) x --samples test samples (half fake), plus
as many clean source val rows per trial; B = --bootstrap-samples (2000). Each path runs in a child process of its own
(the scores already on disk), which times and peaks (VmHWM, reset in between) its two phases apart: the load
(collect_scores + group_scores) and the statistics (build_summary on the grouped scores).

The reference path is build_summary with the three AUC bootstraps swapped for tests/stats_reference.py (the direct
implementation they replaced). `--reference full` runs it at the same B; `--reference fit` (the default above
2,000 samples, where full would take most of an hour and more memory than the goal) runs it at B = 100 and 200 and
extrapolates the statistics' seconds and peak linearly in B (both grow as B x n there; the load does not), and says
so. Either way the new path is also run at the reference's smallest B and the two summaries are compared: the same
seeds must give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfsweep import schema  # noqa: E402

GOALS = {300: (10.0, None), 50_000: (120.0, 4.0)}  # samples -> (seconds, GiB peak RSS)
SEEDS = (42, 123, 7)
ARMS = (("v1", "none", 0.3), ("v2", "none", 0.5), ("v2", "paper", 0.8))  # variant, augmentation, target separation
CONDITIONS = [("none", 0)] + [("jpeg", q) for q in (95, 80, 60, 40, 20)] + [("blur", k) for k in (3, 5, 9)]
FIT_RESAMPLES = (100, 200)  # the reference's B when it is extrapolated (ReportConfig's minimum is 100)
GIB = 2 ** 30


def write_scores(run: schema.RunDir, n: int) -> int:
    """One parquet file per trial; scores degrade with the perturbation's severity. Returns the number of rows."""
    run.scores.mkdir(parents=True, exist_ok=True)
    y = np.r_[np.ones(n // 2, np.int8), np.zeros(n - n // 2, np.int8)]
    ids = {(d, s): pa.array([f"{d}-{s}-{i}" for i in range(n)]) for d, s in (("source", "val"), ("source", "test"),
                                                                           ("target", "test"))}
    rows = 0
    for variant, aug, target_shift in ARMS:
        for seed in SEEDS:
            rng = np.random.default_rng([seed, variant == "v2", aug == "paper"])
            trial = f"{variant}-{aug}-s{seed}"
            parts = []
            for domain, split, shift, conditions in (("source", "val", 2.0, CONDITIONS[:1]),
                                                     ("source", "test", 2.0, CONDITIONS),
                                                     ("target", "test", target_shift, CONDITIONS)):
                base = rng.normal(0, 1, n)
                for pert, level in conditions:
                    severity = 0 if pert == "none" else (100 - level) / 100 if pert == "jpeg" else level / 10
                    logit = base + y * shift * (1 - 0.5 * severity) + rng.normal(0, 0.3 * severity, n)
                    parts.append(pa.table(dict(
                        trial_id=pa.array([trial] * n), variant=pa.array([variant] * n),
                        augmentation=pa.array([aug] * n), seed=pa.array(np.full(n, seed, np.int64)),
                        dataset=pa.array([domain] * n), domain=pa.array([domain] * n), split=pa.array([split] * n),
                        sample_id=ids[domain, split], label=y, perturbation=pa.array([pert] * n),
                        level=pa.array(np.full(n, level, np.int64)),
                        score=(1 / (1 + np.exp(-logit))).astype(np.float32)), schema=schema.scores_schema(video=False)))
            table = pa.concat_tables(parts)
            rows += table.num_rows
            pq.write_table(table, run.score_file(trial))
    return rows


def _peak_gib() -> float:
    """The process's peak RSS since it started or since the last _reset_peak (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS starts again from the current RSS


def child(run_dir: str, path: str, resamples: int, out: str) -> None:
    """One build_summary on `path` ("new" or "reference"), its load (reading and grouping the scores) and its
    statistics timed and peaked apart; writes seconds, peaks, steps and the summary to `out`."""
    from dfsweep.config import ReportConfig
    from dfsweep.verdict import stats
    from dfsweep.verdict.scores import collect_scores
    from dfsweep.verdict.summary import build_summary, group_scores

    sys.path.insert(0, str(REPO / "tests"))
    import stats_reference

    if path == "reference":
        for name in ("bootstrap_auc_ci", "paired_bootstrap_auc_diff", "hierarchical_bootstrap_mean_diff"):
            setattr(stats, name, getattr(stats_reference, name))
    wall, cpu = time.perf_counter(), time.process_time()
    data = group_scores(collect_scores(schema.RunDir(run_dir).scores))
    steps = {"load": time.perf_counter() - wall}
    load_peak = _peak_gib()
    _reset_peak()
    summary = build_summary(run_dir, ReportConfig(bootstrap_samples=resamples), timings=steps, data=data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    Path(out).write_text(json.dumps(dict(seconds=wall, cpu_seconds=cpu, steps=steps, load_peak_gib=load_peak,
                                         stats_peak_gib=_peak_gib(), summary=summary), default=str))


def measure(run_dir: str, path: str, resamples: int, tmp: str) -> dict:
    """Run `child` in a process of its own and read back what it wrote."""
    out = os.path.join(tmp, f"{path}-{resamples}.json")
    code = subprocess.run([sys.executable, __file__, "--child", run_dir, path, str(resamples), out]).returncode
    if code != 0:
        raise SystemExit(f"the {path} path at B={resamples} failed (exit {code})")
    r = json.loads(Path(out).read_text())
    r["peak_gib"] = max(r["load_peak_gib"], r["stats_peak_gib"])
    r["stats_seconds"] = r["seconds"] - r["steps"]["load"]
    print(f"  {path:<9} B={resamples:<5} {r['seconds']:7.1f} s (cpu {r['cpu_seconds']:.1f} s; load "
          f"{r['steps']['load']:.1f} s, statistics {r['stats_seconds']:.1f} s)  peak {r['peak_gib']:.2f} GiB (load "
          f"{r['load_peak_gib']:.2f}, statistics {r['stats_peak_gib']:.2f})", flush=True)
    return r


def fit(points: list[tuple[int, float]], x: int) -> float:
    """The straight line through two (B, value) points, read at B = x."""
    (x0, y0), (x1, y1) = points
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300, help="test samples per domain and trial (half fake)")
    ap.add_argument("--bootstrap-samples", type=int, default=2000)
    ap.add_argument("--reference", choices=("auto", "full", "fit", "none"), default="auto",
                    help="time the slow reference at the same B (full), extrapolate it from B = 100 and 200 (fit), "
                         "or not at all; auto: full up to 2,000 samples, fit above")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_dir, path, resamples, out = args.child
        return child(run_dir, path, int(resamples), out)
    b = args.bootstrap_samples
    mode = ("full" if args.samples <= 2000 else "fit") if args.reference == "auto" else args.reference
    with tempfile.TemporaryDirectory() as tmp:
        run = schema.RunDir(Path(tmp) / "run")
        start = time.perf_counter()
        rows = write_scores(run, args.samples)
        print(f"{rows:,} score rows ({len(ARMS) * len(SEEDS)} trials x 2 domains x {len(CONDITIONS)} conditions x "
              f"{args.samples:,} samples + val), written in {time.perf_counter() - start:.0f} s; {os.cpu_count()} CPUs")
        new = measure(str(run.root), "new", b, tmp)
        ref_bs = {"full": (b,), "fit": FIT_RESAMPLES, "none": ()}[mode]
        refs = {rb: measure(str(run.root), "reference", rb, tmp) for rb in ref_bs}
        same_b = min(ref_bs) if ref_bs else None
        if same_b is not None and same_b != b:
            check = measure(str(run.root), "new", same_b, tmp)
        else:
            check = new
    s = new["summary"]
    print(f"build_summary: {len(s['metrics'])} metric rows, {len(s['per_seed_tests'])} per-seed tests, "
          f"{len(s['tests'])} across-seed tests, B={b}")
    goal_s, goal_gib = GOALS.get(args.samples, (None, None))
    goal = "" if goal_s is None else f"   goal < {goal_s:.0f} s"
    goal += "" if goal_gib is None else f", < {goal_gib:.0f} GiB"
    print(f"new:       {new['seconds']:7.1f} s   peak {new['peak_gib']:.2f} GiB{goal}")
    if goal_s is not None:
        met = new["seconds"] < goal_s and (goal_gib is None or new["peak_gib"] < goal_gib)
        print(f"           goal {'met' if met else 'NOT met'}")
    if refs:
        if mode == "fit":  # the statistics grow as B (time and their own peak); the load does not
            stats_s = fit([(rb, r["stats_seconds"]) for rb, r in refs.items()], b)
            stats_gib = fit([(rb, r["stats_peak_gib"]) for rb, r in refs.items()], b)
            load_s, load_gib = refs[min(ref_bs)]["steps"]["load"], refs[min(ref_bs)]["load_peak_gib"]
            how = f"extrapolated linearly in B from B = {' and '.join(map(str, ref_bs))}, measured above"
        else:
            r = refs[b]
            stats_s, stats_gib, load_s, load_gib = r["stats_seconds"], r["stats_peak_gib"], r["steps"]["load"], \
                r["load_peak_gib"]
            how = "measured"
        ref_s, ref_gib = load_s + stats_s, max(load_gib, stats_gib)
        print(f"reference: {ref_s:7.1f} s   peak {ref_gib:.2f} GiB   ({how})")
        print(f"ratio:     {ref_s / new['seconds']:7.1f}x the new time, {ref_gib / new['peak_gib']:.2f}x its peak")
        print(f"statistics alone (what this bench compares): new {new['stats_seconds']:.1f} s, peak "
              f"{new['stats_peak_gib']:.2f} GiB; reference {stats_s:.1f} s, peak {stats_gib:.2f} GiB: "
              f"{stats_s / new['stats_seconds']:.1f}x faster")
        same = json.dumps(check["summary"], sort_keys=True) == json.dumps(refs[same_b]["summary"], sort_keys=True)
        print(f"summary at B={same_b}: new and reference {'identical' if same else 'DIFFER'}")
    for step, sec in sorted(new["steps"].items(), key=lambda kv: -kv[1]):
        print(f"  {step:<15} {sec:6.2f} s  {sec / new['seconds']:5.1%}")


if __name__ == "__main__":
    main()
