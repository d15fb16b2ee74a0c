"""The embedded demo benchmark: real ORL photos, two manipulation methods, the user's layout, deterministic."""

import csv

import cv2
import numpy as np

from dfsweep.data_pipeline.demo import build_demo


def test_layout_groups_and_determinism(tmp_path):
    a = build_demo(tmp_path / "a", seed=3, people_per_domain=2, photos_per_person=2, log=lambda *x: None)
    b = build_demo(tmp_path / "b", seed=3, people_per_domain=2, photos_per_person=2, log=lambda *x: None)
    assert a == b == {"source/real": 4, "source/fake": 4, "target/real": 4, "target/fake": 4}
    for domain in ("source", "target"):
        for cls in ("real", "fake"):
            names = sorted(p.name for p in (tmp_path / "a" / domain / cls).glob("*.png"))
            for n in names:
                assert (tmp_path / "a" / domain / cls / n).read_bytes() == (tmp_path / "b" / domain / cls / n).read_bytes()
        rows = list(csv.DictReader(open(tmp_path / "a" / domain / "groups.csv")))
        assert len(rows) == 8 and all((tmp_path / "a" / domain / r["path"]).is_file() for r in rows)
    # Identities never cross domains: source groups are pairs of people 1-2, target groups people 21-22.
    src = {r["group"] for r in csv.DictReader(open(tmp_path / "a" / "source" / "groups.csv"))}
    tgt = {r["group"] for r in csv.DictReader(open(tmp_path / "a" / "target" / "groups.csv"))}
    assert src == {"pair00"} and tgt == {"person21", "person22"}


def test_fakes_differ_from_their_real_photo_inside_the_face_only(tmp_path):
    build_demo(tmp_path, seed=0, people_per_domain=2, photos_per_person=1, log=lambda *x: None)
    for domain in ("source", "target"):
        real = cv2.imread(str(tmp_path / domain / "real" / sorted((tmp_path / domain / "real").iterdir())[0].name))
        fake = cv2.imread(str(tmp_path / domain / "fake" / sorted((tmp_path / domain / "fake").iterdir())[0].name))
        diff = np.abs(real.astype(int) - fake.astype(int)).sum(axis=2)
        h, w = diff.shape
        assert diff.mean() > 0.5  # something was manipulated
        border = np.concatenate([diff[:20].ravel(), diff[-20:].ravel(), diff[:, :20].ravel(), diff[:, -20:].ravel()])
        assert border.max() == 0  # ...and only away from the image border
        assert (fake[:, :, 0] == fake[:, :, 1]).all()  # still grayscale: colour is no cue
