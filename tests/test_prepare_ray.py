"""prepare on Ray: the leakage guard, content-addressed re-runs, and resume after SIGKILL (real MTCNN actors)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

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


def test_resume_after_sigkill_loses_and_duplicates_nothing(ray_session, demo_copy, tmp_path):
    run = schema.RunDir(tmp_path / "run")
    cfg_yaml = tmp_path / "c.yaml"
    cfg_yaml.write_text(f"prepare:\n  source: {demo_copy / 'source'}\n  target: {demo_copy / 'target'}\n"
                        "  crop_size_px: 80\n  face_workers: 1\n  face_batch_size: 2\n")
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    child = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", "prepare", str(run.root), "-c", str(cfg_yaml)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts_dir = Path(run.detections)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(parts_dir.rglob("part-*.parquet"))) < 3:
        assert child.poll() is None, "prepare finished before it could be killed: make the data set larger"
        time.sleep(0.05)
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
