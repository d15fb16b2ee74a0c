"""prepare on Ray: the leakage guard, content-addressed re-runs, and resume after SIGKILL (real MTCNN actors)."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import EventFifo

from dfsweep import schema
from dfsweep.config import PrepareConfig
from dfsweep.data_pipeline.pipeline import prepare

pytestmark = [pytest.mark.ray]


def _cfg(root: Path, **kw) -> PrepareConfig:
    settings = dict(crop_size_px=80, face_workers=2, face_batch_size=4) | kw
    return PrepareConfig(source=str(root / "source"), target=str(root / "target"), **settings)


@pytest.fixture()
def demo_copy(tiny_demo, tmp_path) -> Path:
    """A private copy of the tiny demo set (without the planted bad files), free to modify."""
    demo, _ = tiny_demo
    out = tmp_path / "data"
    shutil.copytree(demo, out, ignore=shutil.ignore_patterns("bad"), symlinks=True)
    return out


def _plant_reencoded_copy(data: Path) -> tuple[str, Path]:
    """A source image, re-encoded as JPEG q90 (so its bytes differ), planted among the target's real images."""
    src = sorted((data / "source" / "real").glob("*.png"))[0]
    cv2.imwrite(str(data / "target" / "real" / "copy_of_source.jpg"), cv2.imread(str(src)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return src.name, data / "target" / "real" / "copy_of_source.jpg"


def test_near_duplicate_across_domains_is_dropped_and_counted(ray_session, demo_copy, tmp_path):
    _, planted = _plant_reencoded_copy(demo_copy)
    run = schema.RunDir(tmp_path / "run")
    acc = prepare(_cfg(demo_copy), run, log=lambda *a: None)
    rows = {Path(r["path"]).name: r for r in pq.read_table(run.manifest).to_pylist()}
    row = rows[planted.name]
    assert row["status"] == "near_duplicate" and "source/" in row["reason"] and "dHash" in row["reason"]
    assert acc.by_status["near_duplicate"] >= 1 and acc.balanced
    crops = pq.read_table(run.crops, columns=["sample_id"]).column("sample_id").to_pylist()
    assert row["sample_id"] not in crops and len(crops) == len(set(crops)) == acc.crops


def test_fail_policy_stops_with_the_pairs_named(ray_session, demo_copy, tmp_path):
    from dfsweep.data_pipeline.scan import DatasetError

    _plant_reencoded_copy(demo_copy)
    with pytest.raises(DatasetError, match="near-duplicate crop.*policy 'fail'"):
        prepare(_cfg(demo_copy, near_duplicate_policy="fail"), schema.RunDir(tmp_path / "run"), log=lambda *a: None)


def test_rerun_detects_only_what_changed(ray_session, demo_copy, tmp_path):
    run = schema.RunDir(tmp_path / "run")
    first = prepare(_cfg(demo_copy), run, log=lambda *a: None)
    assert first.detected_now == first.inputs  # nothing cached yet
    again = prepare(_cfg(demo_copy), run, log=lambda *a: None)
    assert again.detected_now == 0 and again == first.__class__(**{**first.__dict__, "detected_now": 0})
    # One new file: only it goes through MTCNN; the manifest and crops cover everything once.
    extra = demo_copy / "target" / "fake" / "new.png"
    img = cv2.imread(str(sorted((demo_copy / "target" / "fake").glob("*.png"))[0]))
    cv2.imwrite(str(extra), cv2.flip(img, 1))
    third = prepare(_cfg(demo_copy), run, log=lambda *a: None)
    assert third.detected_now == 1 and third.inputs == first.inputs + 1
    crops = pq.read_table(run.crops, columns=["sample_id"]).column("sample_id").to_pylist()
    assert len(crops) == len(set(crops)) == third.crops
    # Another split seed: every detection comes from the cache, and each crop carries this manifest's split
    # (not the one it had when it was detected).
    reseeded = prepare(_cfg(demo_copy, split_seed=5), run, log=lambda *a: None)
    assert reseeded.detected_now == 0 and reseeded.crops == third.crops
    _assert_crops_follow_the_manifest(run)


def _assert_crops_follow_the_manifest(run: schema.RunDir) -> None:
    manifest = {r["sample_id"]: r for r in pq.read_table(run.manifest).to_pylist() if r["status"] == "ok"}
    crops = pq.read_table(run.crops, columns=["sample_id", "dataset", "domain", "label", "split", "path"]).to_pylist()
    assert sorted(c["sample_id"] for c in crops) == sorted(manifest)
    for c in crops:
        assert c == {k: manifest[c["sample_id"]][k] for k in c}, c


def test_resume_after_sigkill_loses_and_duplicates_nothing(ray_session, demo_copy, tmp_path):
    run = schema.RunDir(tmp_path / "run")
    cfg_yaml = tmp_path / "c.yaml"
    cfg_yaml.write_text(f"prepare:\n  source: {demo_copy / 'source'}\n  target: {demo_copy / 'target'}\n"
                        "  crop_size_px: 80\n  face_workers: 1\n  face_batch_size: 2\n")
    fifo = EventFifo(tmp_path / "events")
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, **fifo.env}
    child = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", "prepare", str(run.root), "-c", str(cfg_yaml)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    fifo.watch(child)
    parts_dir = Path(run.detections)
    # Killed once its third batch of detections is on disk (dfsweep.events `detected`, emitted as each part lands).
    fifo.wait(lambda e: e["event"] == "detected" and sum(x["event"] == "detected" for x in fifo.seen) == 3)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    before = {p: p.stat().st_mtime_ns for p in parts_dir.rglob("part-*.parquet")}
    assert before and not run.crops_done.exists()

    acc = prepare(_cfg(demo_copy, face_workers=1, face_batch_size=2), run, log=lambda *a: None)
    assert 0 < acc.detected_now < acc.inputs  # the parts written before the kill were not redone
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    crops = pq.read_table(run.crops, columns=["sample_id"]).column("sample_id").to_pylist()
    manifest = pq.read_table(run.manifest)
    ok = [r["sample_id"] for r in manifest.to_pylist() if r["status"] == "ok"]
    assert sorted(crops) == sorted(ok) and len(crops) == len(set(crops))
    assert acc.balanced and manifest.num_rows == acc.inputs


def test_video_frames_become_crops_with_their_video_id(ray_session, demo_copy, tmp_path):
    from skimage import data as skdata

    face = cv2.cvtColor(cv2.resize(skdata.astronaut(), (256, 256)), cv2.COLOR_RGB2BGR)
    for cls, shade in (("real", 0), ("fake", 40)):
        writer = cv2.VideoWriter(str(demo_copy / "target" / cls / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                                 (256, 256))
        for i in range(9):
            writer.write(np.clip(np.roll(face, 3 * i, axis=1).astype(int) - shade, 0, 255).astype(np.uint8))
        writer.release()
    run = schema.RunDir(tmp_path / "run")
    acc = prepare(_cfg(demo_copy, video_frames=3), run, log=lambda *a: None)
    assert acc.balanced
    crops = pq.read_table(run.crops, columns=["sample_id", "video_id", "frame_index", "split", "path"]).to_pylist()
    frames = [c for c in crops if c["video_id"]]
    assert len(frames) == 6 and sorted({c["frame_index"] for c in frames}) == [0, 4, 8]
    for video in {c["video_id"] for c in frames}:
        assert len({c["split"] for c in frames if c["video_id"] == video}) == 1
    assert all(c["frame_index"] == -1 for c in crops if not c["video_id"])


def _colour_stills(root: Path, no_face: set[str]) -> None:
    """9 real + 9 fake colour stills of 18 different ORL people, each its own group named in groups.csv (so the
    split does not depend on the files' bytes); the files named in `no_face` hold noise instead of a face."""
    from dfsweep.data_pipeline.demo import load_orl_photo, orl_root

    orl, rng = orl_root(), np.random.default_rng(0)
    lines = ["path,group"]
    for label, cls in enumerate(("real", "fake")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        tint = np.array(([0.75, 0.9, 1.0], [1.0, 0.85, 0.7])[label])  # BGR gains: warm reals, cool fakes
        for i in range(9):
            name = f"{cls}{i}.png"
            if name in no_face:
                img = rng.integers(0, 256, (304, 264, 3), dtype=np.uint8)
            else:
                img = np.clip(load_orl_photo(orl, 1 + 9 * label + i, 1) * tint, 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / cls / name), img)
            lines.append(f"{cls}/{name},{cls}{i}")
    (root / "groups.csv").write_text("\n".join(lines) + "\n")


def test_splits_are_drawn_among_the_usable_crops(ray_session, demo_copy, tmp_path):
    from dataclasses import replace

    from dfsweep.data_pipeline.leakage import find_near_duplicates
    from dfsweep.data_pipeline.pipeline import REQUIRED_SPLITS
    from dfsweep.data_pipeline.scan import build_manifest

    src = tmp_path / "colour"
    _colour_stills(src, set())
    cfg = replace(_cfg(demo_copy), source=str(src))
    before = [r for r in build_manifest(cfg).to_pylist() if r["domain"] == "source"]
    # Two files per class without a face, every real of the split drawn among the files (source/test) among them.
    in_test = sorted(Path(r["path"]).name for r in before if r["split"] == "test" and r["label"] == 0)
    assert 1 <= len(in_test) <= 2
    reals = in_test + sorted({f"real{i}.png" for i in range(9)} - set(in_test))
    no_face = set(reals[:2]) | {"fake0.png", "fake1.png"}
    _colour_stills(src, no_face)
    assert [r["split"] for r in build_manifest(cfg).to_pylist() if r["domain"] == "source"] == \
        [r["split"] for r in before]  # the files' split is as it was: only their bytes changed

    run = schema.RunDir(tmp_path / "run")
    acc = prepare(cfg, run, log=lambda *a: None)
    assert acc.balanced
    manifest = pq.read_table(run.manifest).to_pylist()
    source = [r for r in manifest if r["domain"] == "source"]
    assert sorted(Path(r["path"]).name for r in source if r["status"] == "no_face") == sorted(no_face)
    assert all(r["split"] == "" for r in manifest if r["status"] != "ok")
    for name in REQUIRED_SPLITS + ("target/adapt",):
        labels = {r["label"] for r in manifest if f"{r['domain']}/{r['split']}" == name and r["status"] == "ok"}
        assert labels == {0, 1}, name
    split_of: dict[tuple[str, str], str] = {}
    for r in manifest:
        if r["status"] == "ok":
            assert split_of.setdefault((r["domain"], r["group"]), r["split"]) == r["split"]  # groups stay whole
    _assert_crops_follow_the_manifest(run)
    # The leakage guard saw the final splits: no two kept crops within its bits sit in different splits.
    crops = pq.read_table(run.crops, columns=["sample_id", "phash", "domain", "split", "path"]).to_pylist()
    assert find_near_duplicates(crops, cfg.near_duplicate_max_bits) == []

    # Deterministic and resumable: a re-run from the detection cache draws the same splits.
    again = schema.RunDir(tmp_path / "again")
    shutil.copytree(run.detections, again.detections)
    assert prepare(cfg, again, log=lambda *a: None).detected_now == 0
    assert pq.read_table(again.manifest).equals(pq.read_table(run.manifest))
