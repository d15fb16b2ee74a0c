"""Benchmarks of the training stage on the demo set.

Run (after `make demo`, whose crops it reuses):
  scripts/isolated.sh .venv/bin/python bench/sweep.py head            # head on cached features vs frozen backbone
  scripts/isolated.sh .venv/bin/python bench/sweep.py sweep [--no-cache-only]   # shared vs unshared sweep

head: time of E epochs of V1's head trained on cached backbone features (the feature pass included once)
  against E epochs of the same model trained end to end with the backbone frozen (the backbone runs every epoch).
  Goal >= 20x.
sweep: the demo config's V1 + V2 x 3 seeds with the shared feature cache, against the same sweep with it switched
  off (sweep.share_work: false); wall time of run_sweep each, as a ratio. Goal >= 3x.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _demo_cfg():
    from dfsweep.config import load_config
    from dfsweep.orchestrator.run import absolute_paths

    os.chdir(REPO)
    return absolute_paths(load_config(REPO / "configs" / "demo.yaml"))


def _crops_run(src: Path, dst: Path):
    from dfsweep import schema

    run = schema.RunDir(src)
    if not run.crops_done.exists():
        sys.exit(f"no finished crops in {src}: run `make demo` first (or pass --crops-from)")
    out = schema.RunDir(dst)
    shutil.copytree(run.crops, out.crops)
    shutil.copy(run.manifest, out.manifest)
    return out


def bench_head(crops_from: Path, epochs: int) -> None:
    import numpy as np

    from dfsweep.crops import CropStore
    from dfsweep.trainables.data import balanced_epoch, index_crops, load_split
    from dfsweep.trainables.models import build_detector, freeze_backbone

    cfg = _demo_cfg().train
    with tempfile.TemporaryDirectory() as tmp:
        run = _crops_run(crops_from, Path(tmp) / "run")
        store = CropStore.of_run(run)
        train = load_split(index_crops(store), store, "source", "train", cfg.input_size_px)
        x = train.batch(np.arange(len(train)))  # in memory on purpose: this measures the model, not the loading
    import keras

    rng = np.random.default_rng(0)
    batches = [balanced_epoch(train.y, cfg.batch_size, rng) for _ in range(epochs)]

    det = build_detector(cfg.input_size_px, cfg.pixel_range, cfg.weights)
    freeze_backbone(det)
    det.head.compile(optimizer=keras.optimizers.Adam(cfg.head_lr), loss="binary_crossentropy")
    start = time.perf_counter()
    feats = det.backbone.predict(x, batch_size=cfg.batch_size, verbose=0)
    for idx in batches:
        det.head.fit(feats[idx], train.y[idx].astype("float32"), batch_size=cfg.batch_size, shuffle=False, verbose=0)
    cached = time.perf_counter() - start

    det2 = build_detector(cfg.input_size_px, cfg.pixel_range, cfg.weights)
    freeze_backbone(det2)
    det2.model.compile(optimizer=keras.optimizers.Adam(cfg.head_lr), loss="binary_crossentropy")
    start = time.perf_counter()
    for idx in batches:
        det2.model.fit(x[idx], train.y[idx].astype("float32"), batch_size=cfg.batch_size, shuffle=False, verbose=0)
    full = time.perf_counter() - start
    print(f"V1 head, {epochs} epochs on {len(train)} source-train crops at {cfg.input_size_px} px:")
    print(f"  on cached features (one feature pass included): {cached:.1f} s")
    print(f"  frozen backbone run every epoch:                {full:.1f} s")
    print(f"  ratio: {full / cached:.1f}x (goal >= 20x)")


def bench_sweep(crops_from: Path, only_unshared: bool) -> None:
    from dfsweep.cluster import ensure_ray
    from dfsweep.orchestrator.sweep import run_sweep

    base = _demo_cfg()
    base = dataclasses.replace(base, sweep=dataclasses.replace(base.sweep, variants=("v1", "v2")))
    ensure_ray()
    times = {}
    for share in ([False] if only_unshared else [True, False]):
        cfg = dataclasses.replace(base, sweep=dataclasses.replace(base.sweep, share_work=share))
        with tempfile.TemporaryDirectory() as tmp:
            run = _crops_run(crops_from, Path(tmp) / "run")
            start = time.perf_counter()
            run_sweep(cfg, run, log=lambda *a: None)
            times[share] = time.perf_counter() - start
        print(f"  sweep with share_work={share}: {times[share]:.0f} s")
    if len(times) == 2:
        print(f"V1+V2 x {len(base.sweep.seeds)} seeds, {base.train.input_size_px} px, "
              f"{len(base.train.perturbation_levels())} degraded levels: "
              f"shared {times[True]:.0f} s vs unshared {times[False]:.0f} s = {times[False] / times[True]:.2f}x (goal >= 3x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["head", "sweep"])
    ap.add_argument("--crops-from", type=Path, default=REPO / "runs" / "demo", help="a run directory with finished crops")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--no-cache-only", action="store_true", help="sweep: run only the unshared sweep")
    args = ap.parse_args()
    if args.part == "head":
        bench_head(args.crops_from, args.epochs)
    else:
        bench_sweep(args.crops_from, args.no_cache_only)


if __name__ == "__main__":
    main()
