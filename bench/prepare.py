"""Benchmark of `dfsweep prepare` (Ray Data + MTCNN actors) against a plain single-process MTCNN loop.

Run:  scripts/isolated.sh .venv/bin/python bench/prepare.py [--sizes 2000 20000] [--workers 2]
          [--baseline-images N] [--baseline-max-s S]
Prints, each figure as a ratio against its baseline:
- throughput: images/s of `prepare` at the larger size against the single-process loop's images/s on the same
  images (goal >= 1.7x on a 2-core machine); the loop's rate does not depend on N, so it may be timed on a seeded
  random subset of those images (--baseline-images, or whatever --baseline-max-s allows), stated in the output;
- peak memory of `prepare` at the two sizes (goal: the larger within 15 % of the smaller): the whole process tree
  (driver + all Ray processes) as the sum of RSS and as the sum of PSS (shared pages, the object store's and the
  libraries', counted once), plus the Ray object store's peak use and any spilling, as Ray reports them.
The machine's load (load averages, and the CPU used by processes that are not ours) is printed for every phase:
on a shared machine the throughput figures are only as good as those numbers.

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
# The child processes and Ray's workers (they inherit this environment) import dfsweep from this checkout too,
# not from wherever an editable install points.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


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


# --- the machine's load ------------------------------------------------------------------------------------------

def _busy_s() -> tuple[float, float]:
    """(CPU seconds all processes of the machine have used so far, steal seconds), from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(v) for v in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / CLK_TCK, (f[7] if len(f) > 7 else 0) / CLK_TCK


class Load:
    """Load averages before/after a phase and the CPU the rest of the machine used during it (busy - ours)."""

    def __init__(self) -> None:
        self.before = Path("/proc/loadavg").read_text().split()[:3]
        self.busy0, self.steal0 = _busy_s()
        self.t0 = time.perf_counter()

    def done(self, our_cpu_s: float) -> dict:
        busy, steal = _busy_s()
        wall = time.perf_counter() - self.t0
        return dict(load_before=" ".join(self.before), load_after=" ".join(Path("/proc/loadavg").read_text().split()[:3]),
                    wall_s=wall, our_cores=our_cpu_s / wall, other_cores=max(0.0, busy - self.busy0 - our_cpu_s) / wall,
                    steal_cores=(steal - self.steal0) / wall)


def load_text(ld: dict) -> str:
    return (f"load avg {ld['load_before']} -> {ld['load_after']}; over its {ld['wall_s']:.0f} s we used "
            f"{ld['our_cores']:.2f} cores, other processes {ld['other_cores']:.2f} of {os.cpu_count()}"
            + (f", steal {ld['steal_cores']:.2f}" if ld["steal_cores"] >= 0.01 else ""))


# --- the baseline ------------------------------------------------------------------------------------------------

def baseline(paths: list[Path], crop_px: int, min_face_px: int, max_s: float) -> dict:
    """Images/s of a plain loop: read, MTCNN (facenet-pytorch, the same minimum face size as prepare, all
    cores to torch), crop, resize, encode. `paths` are taken in order until done or `max_s` has passed."""
    import cv2
    import numpy as np
    import torch
    from facenet_pytorch import MTCNN

    torch.set_grad_enabled(False)
    mtcnn = MTCNN(keep_all=True, min_face_size=min_face_px)
    load = Load()
    cpu0 = time.process_time()
    start = time.perf_counter()
    found = done = 0
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        boxes, probs = mtcnn.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        done += 1
        if boxes is not None:
            x1, y1, x2, y2 = (int(max(0, v)) for v in boxes[int(np.argmax(probs))])
            crop = cv2.resize(bgr[y1:y2, x1:x2], (crop_px, crop_px), interpolation=cv2.INTER_LINEAR)
            cv2.imencode(".png", crop)
            found += 1
        if max_s and time.perf_counter() - start >= max_s:
            break
    elapsed = time.perf_counter() - start
    return dict(images=done, faces=found, seconds=elapsed, images_per_s=done / elapsed,
                torch_threads=torch.get_num_threads(), load=load.done(time.process_time() - cpu0))


# --- prepare, in a child process ----------------------------------------------------------------------------------

def _proc_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _rss_and_cpu(pid: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds used) of one process; (0, 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return rss, (int(f[11]) + int(f[12])) / CLK_TCK  # utime, stime
    except (OSError, ValueError, IndexError):
        return 0, 0.0


def _pss(pid: int) -> int:
    """Proportional set size in bytes (a page shared by k processes counts 1/k in each); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Sampler(threading.Thread):
    """Peaks of the process tree's summed RSS (every 0.2 s) and summed PSS and the object store's use (every 1 s,
    as reading smaps costs more), and every process's CPU time, for the load figures."""

    def __init__(self, store_stats) -> None:
        super().__init__(daemon=True)
        self.store_stats = store_stats  # () -> ObjectStoreStats, or None
        self.stop = threading.Event()
        self.peak = dict(rss=0, pss=0, store_used=0, store_spilled=0)
        self.cpu: dict[int, float] = {}
        self.procs = 0
        self.own_cpu_s = 0.0
        self.store_error = ""

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            pids = _proc_tree(os.getpid())
            self.procs = max(self.procs, len(pids))
            rss = 0
            for p in pids:
                r, c = _rss_and_cpu(p)
                rss += r
                self.cpu[p] = max(self.cpu.get(p, 0.0), c)
            self.peak["rss"] = max(self.peak["rss"], rss)
            if tick % 5 == 0:
                self.peak["pss"] = max(self.peak["pss"], sum(_pss(p) for p in pids))
                if self.store_stats is not None and not self.store_error:
                    try:
                        s = self.store_stats()
                        self.peak["store_used"] = max(self.peak["store_used"], s.object_store_bytes_used)
                        self.peak["store_spilled"] = max(self.peak["store_spilled"], s.spilled_bytes_total)
                    except Exception as exc:  # a failed poll must not end the benchmark: say so instead
                        self.store_error = f"{type(exc).__name__}: {exc}"
            tick += 1
            self.own_cpu_s = time.thread_time()
            self.stop.wait(0.2)


def _store_stats_poller():
    """A cheap poll of the local raylet's object-store statistics (no per-object listing)."""
    import ray
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc

    node = next(n for n in ray.nodes() if n["Alive"])
    stub = node_manager_pb2_grpc.NodeManagerServiceStub(
        init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"))
    request = node_manager_pb2.FormatGlobalMemoryInfoRequest(include_memory_info=False)
    return lambda: stub.FormatGlobalMemoryInfo(request, timeout=10).store_stats


def run_prepare(data: Path, workers: int, crop_px: int) -> dict:
    """One prepare in this process (Ray started first, outside the timing); peak memory of all our processes."""
    import ray

    import dfsweep
    from dfsweep import schema
    from dfsweep.config import PrepareConfig
    from dfsweep.data_pipeline.pipeline import prepare

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        poll = _store_stats_poller()
        poll()
    except Exception as exc:
        poll, poll_error = None, f"{type(exc).__name__}: {exc}"
    else:
        poll_error = ""
    # Ray's processes are children of this driver (local cluster) or of its raylet: the sampler takes the tree.
    sampler = Sampler(poll)
    cfg = PrepareConfig(source=str(data / "source"), target=str(data / "target"), source_per_class_cap=0,
                        target_per_class_cap=0, crop_size_px=crop_px, face_workers=workers,
                        near_duplicate_policy="keep")
    events: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sampler.start()
        time.sleep(0.3)  # the tree's size at rest, before prepare starts
        cpu0 = {p: _rss_and_cpu(p)[1] for p in _proc_tree(os.getpid())}  # Ray's start-up is not prepare's
        load = Load()
        start = time.perf_counter()
        acc = prepare(cfg, schema.RunDir(tmp), log=lambda msg: events.append((time.perf_counter() - start, msg)))
        elapsed = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    ld = load.done(sum(max(0.0, c - cpu0.get(p, 0.0)) for p, c in sampler.cpu.items()))
    worker_file = ray.get(ray.remote(lambda: __import__("dfsweep").__file__).remote())
    ray.shutdown()
    import resource

    return dict(images=acc.inputs, crops=acc.crops, by_status=acc.by_status, seconds=elapsed,
                images_per_s=acc.inputs / elapsed, events=events, load=ld,
                peak_tree_rss_mib=sampler.peak["rss"] / 2**20, peak_tree_pss_mib=sampler.peak["pss"] / 2**20,
                peak_store_used_mib=sampler.peak["store_used"] / 2**20,
                spilled_mib=sampler.peak["store_spilled"] / 2**20, store_error=poll_error or sampler.store_error,
                max_procs=sampler.procs, sampler_cpu_s=sampler.own_cpu_s,
                driver_max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                dfsweep_driver=dfsweep.__file__, dfsweep_worker=worker_file)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000],
                    help="the two image counts: memory is compared between them, throughput taken at the larger")
    ap.add_argument("--workers", type=int, default=2, help="MTCNN actors (prepare.face_workers)")
    ap.add_argument("--crop-px", type=int, default=299)
    ap.add_argument("--baseline-images", type=int, default=0,
                    help="time the loop on this many of the larger size's images (a seeded random sample); 0: all")
    ap.add_argument("--baseline-max-s", type=float, default=0,
                    help="stop the loop after this many seconds (the images done so far are the sample); 0: no limit")
    ap.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        Path(args.child[1]).write_text(json.dumps(run_prepare(Path(args.child[0]), args.workers, args.crop_px)))
        return

    import random

    import dfsweep
    from dfsweep.config import PrepareConfig

    t_all = time.perf_counter()
    small, large = args.sizes
    print(f"dfsweep from {Path(dfsweep.__file__).parent} (this driver); PYTHONPATH={os.environ['PYTHONPATH']}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_images(tmp / "small", small)
        build_images(tmp / "large", large, seed=1)
        print(f"built {small} and {large} distinct face images in {time.perf_counter() - t0:.0f} s")
        results = {}
        for name, n in (("small", small), ("large", large)):
            # Each prepare in a fresh process, so one's memory cannot hide the other's.
            out = tmp / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--crop-px", str(args.crop_px),
                            "--child", str(tmp / name), str(out)], check=True)
            r = results[name] = json.loads(out.read_text())
            print(f"\ndfsweep prepare, {n} images: {r['images']} images, {r['crops']} crops {r['by_status']}, "
                  f"{r['seconds']:.1f} s, {r['images_per_s']:.1f} img/s")
            print(f"  peak memory of all {r['max_procs']} processes: RSS sum {r['peak_tree_rss_mib']:.0f} MiB, "
                  f"PSS sum {r['peak_tree_pss_mib']:.0f} MiB; object store peak {r['peak_store_used_mib']:.1f} MiB, "
                  f"spilled {r['spilled_mib']:.1f} MiB{' (' + r['store_error'] + ')' if r['store_error'] else ''}; "
                  f"driver max RSS {r['driver_max_rss_mib']:.0f} MiB")
            print("  " + load_text(r["load"]) + f" (sampler {r['sampler_cpu_s']:.1f} CPU s)")
            print("  dfsweep from " + ", ".join(sorted({str(Path(r['dfsweep_driver']).parent) + ' (driver)',
                                                       str(Path(r['dfsweep_worker']).parent) + ' (Ray worker)'})))
            for at, msg in r["events"]:
                print(f"  at {at:6.1f} s: {msg[:160]}")
        paths = sorted((tmp / "large").rglob("*.png"))
        random.Random(0).shuffle(paths)
        if args.baseline_images:
            paths = paths[:args.baseline_images]
        base = baseline(paths, args.crop_px, PrepareConfig().min_face_px, args.baseline_max_s)
        subset = (f"all {large} images" if base["images"] == large else
                  f"a seeded random {base['images']} of the {large} images"
                  + (" (stopped by --baseline-max-s)" if base["images"] < len(paths) else ""))
        print(f"\nsingle-process loop on {subset}: {base['faces']} faces, {base['seconds']:.1f} s, "
              f"{base['images_per_s']:.1f} img/s, torch threads {base['torch_threads']}")
        print("  " + load_text(base["load"]))

    fast, slow = results["large"], results["small"]
    rate = base["images_per_s"]
    print("\n=== results ===")
    print(f"throughput at {large} images: dfsweep prepare {fast['images_per_s']:.1f} img/s vs single-process loop "
          f"{rate:.1f} img/s ({subset}) = {fast['images_per_s'] / rate:.2f}x (goal >= 1.7x; Ray start-up excluded, "
          f"scan/hash/leakage guard/write included)")
    print(f"  (at {small} images: prepare {slow['images_per_s']:.1f} img/s = {slow['images_per_s'] / rate:.2f}x "
          f"the same loop rate)")
    for key, what in (("peak_tree_pss_mib", "peak PSS sum, all processes (object store and libraries once)"),
                      ("peak_tree_rss_mib", "peak RSS sum, all processes"),
                      ("peak_store_used_mib", "object store peak use")):
        a, b = slow[key], fast[key]
        ratio = f"{b / a:.2f}x ({(b / a - 1) * 100:+.1f} %)" if a > 0 else "n/a"
        digits = 0 if max(a, b) >= 100 else 2
        print(f"{what}: {a:.{digits}f} MiB at {small} images, {b:.{digits}f} MiB at {large} images = {ratio}"
              + (" (goal within 15 %)" if key == "peak_tree_pss_mib" else ""))
    print(f"driver max RSS: {slow['driver_max_rss_mib']:.0f} MiB at {small}, {fast['driver_max_rss_mib']:.0f} MiB "
          f"at {large} = {fast['driver_max_rss_mib'] / slow['driver_max_rss_mib']:.2f}x")
    print(f"spilled to disk: {slow['spilled_mib']:.1f} MiB at {small}, {fast['spilled_mib']:.1f} MiB at {large}")
    print(f"machine load: prepare {small}: other processes {slow['load']['other_cores']:.2f} cores; prepare {large}: "
          f"{fast['load']['other_cores']:.2f}; loop: {base['load']['other_cores']:.2f} (of {os.cpu_count()})")
    print(f"wall time of the whole benchmark: {(time.perf_counter() - t_all) / 60:.1f} min")


if __name__ == "__main__":
    main()
