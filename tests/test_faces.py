"""MTCNN (facenet-pytorch) really detects faces: found in real photos, not in noise; crops are what they claim."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from dfsweep.crops import decode_png_rgb
from dfsweep.data_pipeline.faces import FaceCropper, detect_face, load_mtcnn


@pytest.fixture(scope="module")
def mtcnn():
    return load_mtcnn(min_face_px=20)


def test_finds_the_astronauts_face(mtcnn):
    bgr = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    face = detect_face(mtcnn, bgr, 0.9)
    assert face is not None and face.prob > 0.99
    x1, y1, x2, y2 = face.box
    # Her face lies in the upper middle of the 512x512 photo.
    assert 120 < x1 < x2 < 300 and 30 < y1 < y2 < 250
    assert face.landmarks.shape == (5, 2)


@pytest.mark.parametrize("image", ["noise", "grey"])
def test_no_face_in_noise_or_flat_grey(mtcnn, image):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) if image == "noise" else np.full((256, 256, 3), 128, np.uint8)
    assert detect_face(mtcnn, bgr, 0.9) is None


def test_cropper_rows(tmp_path):
    cropper = FaceCropper(crop_size_px=96, margin=0.3, min_face_px=20, min_face_prob=0.9)
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    row = cropper.crop_one(str(photo))
    assert row["status"] == "ok" and row["reason"] == "" and row["n_faces"] == 1
    crop = decode_png_rgb(row["image"])
    assert crop.shape == (96, 96, 3) and (row["height"], row["width"]) == (96, 96)

    (tmp_path / "html.jpg").write_text("<html></html>")
    bad = cropper.crop_one(str(tmp_path / "html.jpg"))
    assert bad["status"] == "unreadable" and "decodable" in bad["reason"] and bad["image"] == b""
    gone = cropper.crop_one(str(tmp_path / "missing.jpg"))
    assert gone["status"] == "unreadable" and "cannot read" in gone["reason"]

    big = tmp_path / "tiny_face.png"
    small = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (40, 40))
    cv2.imwrite(str(big), cv2.copyMakeBorder(small, 100, 100, 100, 100, cv2.BORDER_CONSTANT))
    assert cropper.crop_one(str(big))["status"] in ("no_face", "too_small")
