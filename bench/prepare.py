"""Benchmark of `dfsweep prepare` (Ray Data + MTCNN actors) against a plain single-process MTCNN loop.

Run:  scripts/isolated.sh .venv/bin/python bench/prepare.py [--sizes 500 2000] [--workers 2]
Prints: images/s of both on the same 500 images and their ratio (goal >= 1.7x on a 2-core machine), and peak
RSS (driver + all Ray processes) of `prepare` at 500 and at 2,000 images (goal: within 15 % of each other).

Images: ORL face photos (the demo's source), upscaled 2x and padded, each written several times with a random
shift and brightness so every file is distinct. The baseline reads each file, runs facenet-pytorch MTCNN with its
minimum face size prepare uses (all cores to torch), crops, resizes and PNG-encodes the face, like a notebook
would. (facenet's default minimum face size, 20 px, is slower still: it searches more pyramid scales.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_images(out: Path, n: int, seed: int = 0) -> None:
    """n distinct face images: 80 % source, 20 % target, half real half fake (labels do not matter here)."""
    import cv2
    import numpy as np

    from dfsweep.data_pipeline.demo import load_orl_photo, orl_root

    root, rng = orl_root(), np.random.default_rng(seed)
    photos = [load_orl_photo(root, p, k) for p in range(1, 41) for k in range(1, 11)]
    for i in range(n):
        domain = "source" if i < n * 0.8 else "target"
        cls = "real" if i % 2 == 0 else "fake"
        img = photos[i % len(photos)]
        dx, dy = rng.integers(-8, 9, size=2)
        shifted = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        shifted = np.clip(shifted.astype(np.float32) * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
        path = out / domain / cls / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), shifted)


def baseline(paths: list[Path], crop_px: int, min_face_px: int) -> float:
    """Images/s of a plain loop: read, MTCNN (facenet-pytorch, the same minimum face size as prepare, all
    cores to torch), crop, resize, encode."""
    import cv2
    import numpy as np
    import torch
    from facenet_pytorch import MTCNN

    torch.set_grad_enabled(False)
    mtcnn = MTCNN(keep_all=True, min_face_size=min_face_px)
    start = time.perf_counter()
    found = 0
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        boxes, probs = mtcnn.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        if boxes is None:
            continue
        x1, y1, x2, y2 = (int(max(0, v)) for v in boxes[int(np.argmax(probs))])
        crop = cv2.resize(bgr[y1:y2, x1:x2], (crop_px, crop_px), interpolation=cv2.INTER_LINEAR)
        cv2.imencode(".png", crop)
        found += 1
    elapsed = time.perf_counter() - start
    print(f"  baseline: {len(paths)} images, {found} faces, {elapsed:.1f} s, torch threads {torch.get_num_threads()}")
    return len(paths) / elapsed


def _tree_rss(pid: int) -> int:
    """Bytes of resident memory of `pid` and all its descendants, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run_prepare(data: Path, workers: int, crop_px: int) -> dict:
    """One prepare in this process (Ray started first, outside the timing); peak RSS of all our processes."""
    import ray

    from dfsweep import schema
    from dfsweep.config import PrepareConfig
    from dfsweep.data_pipeline.pipeline import prepare

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    peak = {"tree": 0}
    stop = threading.Event()

    def sample() -> None:
        # Ray's processes are children of this driver (local cluster) or of its raylet: take the whole tree.
        while not stop.is_set():
            peak["tree"] = max(peak["tree"], _tree_rss(os.getpid()))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cfg = PrepareConfig(source=str(data / "source"), target=str(data / "target"), source_per_class_cap=0,
                        target_per_class_cap=0, crop_size_px=crop_px, face_workers=workers,
                        near_duplicate_policy="keep")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        acc = prepare(cfg, schema.RunDir(tmp), log=lambda *a: None)
        elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    ray.shutdown()
    import resource

    return dict(images=acc.inputs, crops=acc.crops, seconds=elapsed, images_per_s=acc.inputs / elapsed,
                peak_tree_rss_mib=peak["tree"] / 2**20,
                driver_max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[500, 2000], help="the two image counts for the RSS check")
    ap.add_argument("--workers", type=int, default=2, help="MTCNN actors (prepare.face_workers)")
    ap.add_argument("--crop-px", type=int, default=299)
    ap.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        Path(args.child[1]).write_text(json.dumps(run_prepare(Path(args.child[0]), args.workers, args.crop_px)))
        return

    small, large = args.sizes
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"building {small} and {large} distinct face images ...")
        build_images(tmp / "small", small)
        build_images(tmp / "large", large, seed=1)
        results = {}
        for name in ("small", "large"):
            # Each prepare in a fresh process, so one's memory cannot hide the other's.
            out = tmp / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--crop-px", str(args.crop_px),
                            "--child", str(tmp / name), str(out)], check=True)
            results[name] = json.loads(out.read_text())
            r = results[name]
            print(f"  dfsweep prepare: {r['images']} images, {r['crops']} crops, {r['seconds']:.1f} s, "
                  f"{r['images_per_s']:.1f} img/s, peak RSS of all processes {r['peak_tree_rss_mib']:.0f} MiB, "
                  f"driver max RSS {r['driver_max_rss_mib']:.0f} MiB")
        paths = sorted((tmp / "small").rglob("*.png"))
        from dfsweep.config import PrepareConfig

        base = baseline(paths, args.crop_px, PrepareConfig().min_face_px)

    fast = results["small"]["images_per_s"]
    rss_small, rss_large = results["small"]["peak_tree_rss_mib"], results["large"]["peak_tree_rss_mib"]
    print()
    print(f"throughput on the same {small} images: dfsweep prepare {fast:.1f} img/s vs single-process loop "
          f"{base:.1f} img/s = {fast / base:.2f}x (goal >= 1.7x; Ray start-up excluded, scan/hash/write included)")
    print(f"peak RSS, all processes: {rss_small:.0f} MiB at {small} images, {rss_large:.0f} MiB at {large} images: "
          f"{(rss_large / rss_small - 1) * 100:+.1f} % (goal within 15 %)")
    print(f"driver max RSS: {results['small']['driver_max_rss_mib']:.0f} MiB at {small}, "
          f"{results['large']['driver_max_rss_mib']:.0f} MiB at {large}")


if __name__ == "__main__":
    main()
