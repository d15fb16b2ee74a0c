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
    adapt = {r["sample_id"] for r in tgt if r["split"] == "adapt"}
    test = {r["sample_id"] for r in tgt if r["split"] == "test"}
    assert adapt and test and not adapt & test and len(adapt) + len(test) == 50


def test_duplicate_content_is_recorded_not_used(tmp_path):
    cfg = _cfg(tmp_path)
    data = (tmp_path / "src" / "real" / "sub" / "000.png").read_bytes()
    (tmp_path / "tgt" / "fake" / "copy.png").write_bytes(data)
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
    with pytest.raises(DatasetError, match=r"real/ holds no image files"):
        build_manifest(PrepareConfig(source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))


def test_roots_must_be_given():
    with pytest.raises(DatasetError, match="prepare.source and prepare.target"):
        build_manifest(PrepareConfig())


def test_too_few_groups_for_the_splits_is_a_clear_error(tmp_path):
    _tree(tmp_path / "src", 4, n_groups=2)
    _tree(tmp_path / "tgt", 4, seed=1)
    with pytest.raises(DatasetError, match="source train split would hold no samples"):
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
