"""Scanning dataset roots into the manifest: every file a row, deterministic caps and group-disjoint splits."""

from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pytest

from dfsweep.config import PrepareConfig
from dfsweep.data_pipeline.scan import DatasetError, build_manifest


def _tree(root: Path, n_per_class: int, n_groups: int = 0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = ["path,group"]
    for cls in ("real", "fake"):
        (root / cls / "sub").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rel = f"{cls}/sub/{i:03d}.png"
            cv2.imwrite(str(root / rel), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            if n_groups:
                lines.append(f"{rel},g{i % n_groups}")
    if n_groups:
        (root / "groups.csv").write_text("\n".join(lines) + "\n")


def _cfg(tmp_path, **kw):
    _tree(tmp_path / "src", 30, n_groups=10)
    _tree(tmp_path / "tgt", 25, seed=1)
    return PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt"), **kw)


def test_every_file_is_a_row_and_caps_are_per_class(tmp_path):
    cfg = _cfg(tmp_path, source_per_class_cap=20, target_per_class_cap=0)
    m = build_manifest(cfg).to_pylist()
    assert len(m) == 60 + 50
    src = [r for r in m if r["domain"] == "source"]
    for label in (0, 1):
        rows = [r for r in src if r["label"] == label]
        assert sum(r["status"] == "pending" for r in rows) == 20
        assert sum(r["status"] == "not_sampled" for r in rows) == 10
        assert all("cap of 20" in r["reason"] for r in rows if r["status"] == "not_sampled")
    assert all(r["status"] == "pending" for r in m if r["domain"] == "target")
    assert len({r["sample_id"] for r in m}) == len(m)


def test_manifest_is_deterministic_and_seeded(tmp_path):
    cfg = _cfg(tmp_path, source_per_class_cap=20)
    assert build_manifest(cfg).equals(build_manifest(cfg))
    other = build_manifest(PrepareConfig(**{**cfg.__dict__, "split_seed": 1}))
    assert not other.equals(build_manifest(cfg))


def test_groups_never_cross_splits_and_fractions_hold(tmp_path):
    m = build_manifest(_cfg(tmp_path, source_per_class_cap=0)).to_pylist()
    src = [r for r in m if r["domain"] == "source"]
    split_of = {}
    for r in src:
        assert split_of.setdefault(r["group"], r["split"]) == r["split"]
    counts = {s: sum(r["split"] == s for r in src) for s in ("train", "val", "test")}
    assert counts["val"] >= 0.2 * 60 and counts["test"] >= 0.2 * 60 and counts["train"] > 0
    tgt = [r for r in m if r["domain"] == "target"]
    adapt, val, test = ({r["sample_id"] for r in tgt if r["split"] == s} for s in ("adapt", "val", "test"))
    assert adapt and val and test and not (adapt & test or val & test or adapt & val)
    assert len(adapt) + len(val) + len(test) == 50
    for r in tgt:
        assert split_of.setdefault(r["group"], r["split"]) == r["split"]


def test_target_val_is_carved_out_of_the_adapt_pool_and_leaves_test_as_it_was(tmp_path):
    def target(**kw):
        m = build_manifest(_cfg(tmp_path, source_per_class_cap=0, **kw)).to_pylist()
        return {s: {r["sample_id"] for r in m if r["domain"] == "target" and r["split"] == s}
                for s in ("adapt", "val", "test")}

    without, carved = target(target_val_fraction=0.0), target(target_val_fraction=0.15)
    assert not without["val"] and carved["val"]
    assert carved["test"] == without["test"]
    assert carved["adapt"] | carved["val"] == without["adapt"]


def test_duplicate_content_is_recorded_not_used(tmp_path):
    cfg = _cfg(tmp_path)
    data = (tmp_path / "src" / "real" / "sub" / "000.png").read_bytes()
    (tmp_path / "tgt" / "real" / "copy.png").write_bytes(data)  # same label: a duplicate (see label conflicts)
    m = build_manifest(cfg)
    dup = m.filter(pc.equal(m.column("status"), "duplicate")).to_pylist()
    assert len(dup) == 1 and dup[0]["domain"] == "target" and "000.png" in dup[0]["reason"]


def test_unusable_files_get_rows_with_reasons(tmp_path):
    cfg = _cfg(tmp_path)
    (tmp_path / "src" / "fake" / "empty.png").write_bytes(b"")
    (tmp_path / "src" / "fake" / "readme.txt").write_text("x")
    m = {Path(r["path"]).name: r for r in build_manifest(cfg).to_pylist()}
    assert m["empty.png"]["status"] == "unreadable" and "0 bytes" in m["empty.png"]["reason"]
    assert m["readme.txt"]["status"] == "unsupported" and ".txt" in m["readme.txt"]["reason"]


def test_missing_class_folder_is_a_clear_error(tmp_path):
    _tree(tmp_path / "src", 3)
    (tmp_path / "tgt" / "real").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no fake/ folder"):
        build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))


def test_empty_class_is_a_clear_error(tmp_path):
    _tree(tmp_path / "src", 3)
    (tmp_path / "tgt" / "real").mkdir(parents=True)
    (tmp_path / "tgt" / "fake").mkdir(parents=True)
    (tmp_path / "tgt" / "real" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"tgt/real \(real, layout generic\) holds no image or video files"):
        build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))


def test_roots_must_be_given():
    with pytest.raises(DatasetError, match="prepare.source and prepare.target"):
        build_manifest(PrepareConfig())


def test_too_few_groups_for_the_splits_is_a_clear_error(tmp_path):
    _tree(tmp_path / "src", 4, n_groups=2)
    _tree(tmp_path / "tgt", 4, seed=1)
    with pytest.raises(DatasetError, match=r"source (train|val|test) split would hold no samples \(2 groups"):
        build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))


def test_crops_lacking_a_class_in_a_split_are_refused():
    import pyarrow as pa

    from dfsweep import schema
    from dfsweep.data_pipeline.pipeline import check_usable

    rows = [dict(sample_id=f"s{i}", path=f"/x/{i}", dataset="d", domain=d, label=lab, group=f"s{i}", split=sp,
                 status="ok", reason="")
            for i, (d, sp, lab) in enumerate([(d, sp, lab) for d, sp in (("source", "train"), ("source", "val"),
                                              ("source", "test"), ("target", "test")) for lab in (0, 1)])]
    check_usable(pa.Table.from_pylist(rows, schema=schema.MANIFEST))
    rows[-1]["status"], rows[-1]["reason"] = "no_face", "MTCNN found no face"
    with pytest.raises(DatasetError, match=r"target/test \(1 real, 0 fake\)"):
        check_usable(pa.Table.from_pylist(rows, schema=schema.MANIFEST))


def _kaggle_ciplab(root: Path, n: int) -> None:
    rng = np.random.default_rng(2)
    for base in (root / "real_and_fake_face", root / "real_and_fake_face_detection" / "real_and_fake_face"):
        for cls in ("training_real", "training_fake"):
            (base / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(base / cls / f"{cls}_{i}.jpg"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def _kaggle_manjil(root: Path, n: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            (root / "Dataset" / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(root / "Dataset" / split / cls / f"{cls}_{i}.jpg"),
                            rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def test_kaggle_layouts_are_detected(tmp_path):
    from dfsweep.data_pipeline.scan import scan_dataset

    _kaggle_ciplab(tmp_path / "cip", 5)
    _kaggle_manjil(tmp_path / "manjil", 4)
    cip = scan_dataset(tmp_path / "cip", "cip", "source")
    assert len(cip) == 10  # the shallow copy only: the nested duplicate folder is not read
    assert all("/real_and_fake_face/training_" in r["path"] for r in cip)
    assert {r["label"] for r in cip if "training_fake" in r["path"]} == {1}
    manjil = scan_dataset(tmp_path / "manjil", "m", "target")
    assert len(manjil) == 24 and all(r["split"] == "" for r in manjil)
    assert {r["label"] for r in manjil if "/Fake/" in r["path"]} == {1}


def test_forced_layout_that_does_not_fit_is_a_clear_error(tmp_path):
    from dfsweep.data_pipeline.scan import scan_dataset

    _kaggle_ciplab(tmp_path / "cip", 2)
    with pytest.raises(DatasetError, match=r"matches no dataset layout: expected ROOT/Dataset/\{Train"):
        scan_dataset(tmp_path / "cip", "cip", "source", layout="manjilkarki")
    with pytest.raises(DatasetError, match="ciplab"):
        scan_dataset(tmp_path / "cip" / "real_and_fake_face" / "training_real", "x", "source")


def test_manjilkarki_own_split_can_be_kept_or_ignored(tmp_path):
    _kaggle_manjil(tmp_path / "src", 10)
    _kaggle_manjil(tmp_path / "tgt", 10, seed=4)
    base = dict(source=str(tmp_path / "src"), target=str(tmp_path / "tgt"), source_per_class_cap=0,
                target_per_class_cap=0)
    kept = build_manifest(PrepareConfig(**base, keep_dataset_splits=True)).to_pylist()
    for r in kept:
        own = r["path"].split("/Dataset/")[1].split("/")[0]
        want = {"Train": "train", "Validation": "val", "Test": "test"}[own]
        if r["domain"] == "target":  # its Validation part is target/val, held out of the adapt pool
            want = want if want in ("test", "val") else "adapt"
        assert r["split"] == want
    ours = build_manifest(PrepareConfig(**base)).to_pylist()
    assert {r["split"] for r in ours if r["domain"] == "source"} == {"train", "val", "test"}
    assert any(r["split"] != k["split"] for r, k in zip(sorted(ours, key=lambda r: r["path"]),
                                                        sorted(kept, key=lambda r: r["path"])))


def _video(path: Path, n_frames: int, shade: int = 0) -> None:
    from skimage import data as skdata

    face = cv2.cvtColor(cv2.resize(skdata.astronaut(), (64, 64)), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(n_frames):
        writer.write(np.clip(np.roll(face, i, axis=1).astype(int) + shade, 0, 255).astype(np.uint8))
    writer.release()


def test_videos_are_sampled_to_evenly_spaced_frames_that_stay_together(tmp_path):
    from dfsweep.data_pipeline.scan import frame_indices

    assert frame_indices(30, 4) == [0, 10, 19, 29]
    assert frame_indices(3, 8) == [0, 1, 2]
    for root in ("src", "tgt"):
        for cls in ("real", "fake"):
            (tmp_path / root / cls).mkdir(parents=True)
            for v in range(10):
                _video(tmp_path / root / cls / f"v{v}.avi", 12 + v, shade=5 * v + 60 * (root == "tgt") + 120 * (cls == "fake"))
    m = build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt"), video_frames=3,
                                     source_per_class_cap=0, target_per_class_cap=0)).to_pylist()
    assert len(m) == 2 * 2 * 10 * 3
    by_video: dict[str, list[dict]] = {}
    for r in m:
        by_video.setdefault(r["video_id"], []).append(r)
    for rows in by_video.values():
        assert len({r["split"] for r in rows}) == 1  # frames of one video never cross splits
        cap = cv2.VideoCapture(rows[0]["path"])
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        assert sorted(r["frame_index"] for r in rows) == frame_indices(n, 3) and len(rows) == 3
    assert len({r["sample_id"] for r in m}) == len(m)


@pytest.mark.parametrize("where", ["same_domain", "across_domains"])
def test_the_same_file_in_real_and_fake_is_a_label_conflict_for_both(tmp_path, where):
    from dfsweep.data_pipeline.pipeline import accounting

    cfg = _cfg(tmp_path, source_per_class_cap=0, target_per_class_cap=0)
    real = tmp_path / "src" / "real" / "sub" / "007.png"
    fake = tmp_path / ("src" if where == "same_domain" else "tgt") / "fake" / "looks_real.png"
    fake.write_bytes(real.read_bytes())
    (tmp_path / "src" / "real" / "sub" / "again.png").write_bytes(real.read_bytes())  # a third copy, in real/
    m = build_manifest(cfg)
    rows = {r["path"]: r for r in m.to_pylist()}
    copies = [str(real), str(fake), str(tmp_path / "src" / "real" / "sub" / "again.png")]
    for path in copies:
        row = rows[path]
        assert row["status"] == "label_conflict" and row["split"] == "", row
        others = [p for p in copies if p != path and rows[p]["label"] != row["label"]]
        assert any(p in row["reason"] for p in others), row["reason"]  # names a copy with the other label
        assert ("fake" if row["label"] == 0 else "real") in row["reason"]
    assert len({r["sample_id"] for r in rows.values()}) == len(rows)  # ids stay unique
    acc = accounting(m, crops_rows=0)
    assert acc.by_status["label_conflict"] == 3 and acc.inputs == sum(acc.by_status.values())


def _write_video(path: Path, n_frames: int, side_px: int = 256) -> None:
    from skimage import data as skdata

    face = cv2.cvtColor(cv2.resize(skdata.astronaut(), (side_px, side_px)), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (side_px, side_px))
    for i in range(n_frames):
        writer.write(np.ascontiguousarray(np.roll(face, 3 * i, axis=1)))
    writer.release()


def _frames_that_decode(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_frames_are_sampled_among_the_frames_that_decode(tmp_path):
    from dfsweep.data_pipeline.faces import FaceCropper
    from dfsweep.data_pipeline.scan import frame_indices, scan_dataset

    root = tmp_path / "data"
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
    whole = root / "real" / "whole.avi"
    _write_video(whole, 20)
    data = whole.read_bytes()
    # Cut short (a download that stopped): the AVI header still says 20 frames, fewer decode.
    (root / "fake" / "cut.avi").write_bytes(data[: len(data) * 4 // 5])
    (root / "fake" / "header_only.avi").write_bytes(data[: data.index(b"movi") + 4])  # headers, no frame
    for name in ("cut.avi", "header_only.avi"):
        cap = cv2.VideoCapture(str(root / "fake" / name))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20  # the premise: the header over-counts
        cap.release()
    decodable = _frames_that_decode(root / "fake" / "cut.avi")
    assert 0 < decodable < 20 and _frames_that_decode(root / "fake" / "header_only.avi") == 0

    rows = scan_dataset(root, "d", "source", video_frames=8)
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(Path(r["path"]).name, []).append(r)
    assert sorted(r["frame_index"] for r in by_name["whole.avi"]) == frame_indices(20, 8)
    cut = sorted(by_name["cut.avi"], key=lambda r: r["frame_index"])
    assert [r["frame_index"] for r in cut] == frame_indices(decodable, 8)  # the last one is the last that decodes
    [empty] = by_name["header_only.avi"]
    assert empty["status"] == "unreadable" and "no frame" in empty["reason"] and empty["frame_index"] == -1
    cropper = FaceCropper(crop_size_px=96, margin=0.3, min_face_px=40, min_face_prob=0.9)
    outcomes = [cropper.crop_one(r["path"], r["frame_index"]) for r in cut + by_name["whole.avi"]]
    assert [o["status"] for o in outcomes] == ["ok"] * 16, [o["reason"] for o in outcomes]


def test_copies_of_a_video_keep_one_manifest_id_per_frame(tmp_path):
    import shutil

    for root in ("src", "tgt"):
        for cls in ("real", "fake"):
            (tmp_path / root / cls).mkdir(parents=True)
            for v in range(5):
                shade = 9 * v + 60 * (root == "tgt") + 120 * (cls == "fake")
                _video(tmp_path / root / cls / f"v{v}.avi", 6, shade=shade)
    shutil.copy(tmp_path / "src" / "real" / "v0.avi", tmp_path / "src" / "real" / "x_again.avi")  # a duplicate
    shutil.copy(tmp_path / "src" / "real" / "v1.avi", tmp_path / "src" / "fake" / "x_which.avi")  # a label conflict
    m = build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt"), video_frames=3,
                                     source_per_class_cap=0, target_per_class_cap=0)).to_pylist()
    status = {}
    for r in m:
        if r["domain"] == "source":
            status.setdefault(str(Path(r["path"]).relative_to(tmp_path / "src")), []).append(r["status"])
    assert status["real/x_again.avi"] == ["duplicate"] * 3 and status["real/v0.avi"] == ["pending"] * 3
    assert status["real/v1.avi"] == status["fake/x_which.avi"] == ["label_conflict"] * 3
    assert len({r["sample_id"] for r in m}) == len(m)  # every frame of every copy has its own id
