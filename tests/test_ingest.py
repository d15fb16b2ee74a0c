"""Bad input gets a reason, never a crash: every kind from the ingestion issue, built on the fly.

Decoding and detection kinds go through FaceCropper.crop_one (real MTCNN, no Ray); file-system kinds through
the scan. The whole set planted in one dataset is run through Ray in tests/test_flow.py (accounting identity).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from dfsweep.config import PrepareConfig
from dfsweep.data_pipeline.faces import FaceCropper, decode_image
from dfsweep.data_pipeline.leakage import find_near_duplicates
from dfsweep.data_pipeline.scan import scan_dataset

ASTRONAUT = skdata.astronaut()  # RGB 512x512, one face


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(crop_size_px=96, margin=0.3, min_face_px=40, min_face_prob=0.9)


def _save(img: Image.Image, path: Path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_colour_modes_become_a_face_crop(cropper, tmp_path, mode):
    rgb = Image.fromarray(ASTRONAUT)
    if mode == "I;16":
        path = str(tmp_path / "face16.png")
        cv2.imwrite(path, ASTRONAUT[:, :, ::-1].astype(np.uint16) * 257)  # a 16-bit-per-channel PNG
    else:
        path = _save(rgb.convert(mode), tmp_path / f"face.{'jpg' if mode == 'CMYK' else 'png'}")
    if mode == "I;16":
        assert cv2.imread(path, cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really a 16-bit file
    if mode == "CMYK":
        assert Image.open(path).mode == "CMYK"
    row = cropper.crop_one(path)
    assert row["status"] == "ok", row["reason"]
    assert decode_image(open(path, "rb").read())[0].shape == (512, 512, 3)


def test_exif_rotation_is_honoured(cropper, tmp_path):
    upright = ASTRONAUT[:, :400]  # 512 high, 400 wide
    stored = np.rot90(upright, k=1)  # what the camera wrote: turned a quarter, with EXIF saying so
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = _save(Image.fromarray(np.ascontiguousarray(stored)), tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    bgr, factor = decode_image(open(path, "rb").read())
    assert bgr.shape == (512, 400, 3) and factor == 1
    assert np.abs(bgr[:, :, ::-1].astype(int) - upright.astype(int)).mean() < 6
    assert cropper.crop_one(path)["status"] == "ok"


def test_very_large_image_is_decoded_small_and_still_found(cropper, tmp_path):
    big = np.full((12000, 12000, 3), 120, np.uint8)
    big[4000:8000, 4000:8000] = cv2.resize(ASTRONAUT[:, :, ::-1], (4000, 4000), interpolation=cv2.INTER_AREA)
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    bgr, factor = decode_image(path.read_bytes())
    assert max(bgr.shape[:2]) == 3000 and factor == 4  # decoded at 1/4 scale straight from the JPEG (>= the 1600 px detection size)
    row = cropper.crop_one(str(path))
    x1, y1, x2, y2 = row["box"]  # in the original 12000 px coordinates: the face lies inside the pasted square
    assert row["status"] == "ok" and 4000 < x1 < x2 < 8000 and 4000 < y1 < y2 < 8000


def test_truncated_jpeg_html_and_tiny_images(cropper, tmp_path):
    ok, jpeg = cv2.imencode(".jpg", ASTRONAUT[:, :, ::-1])
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) * 2 // 3])
    (tmp_path / "page.jpg").write_text("<!doctype html><title>404</title>")
    cv2.imwrite(str(tmp_path / "tiny.png"), cv2.resize(ASTRONAUT, (30, 30)))
    cut, page, tiny = (cropper.crop_one(str(tmp_path / n)) for n in ("cut.jpg", "page.jpg", "tiny.png"))
    assert cut["status"] == "truncated" and "end-of-image" in cut["reason"]
    assert page["status"] == "unreadable" and "not a decodable" in page["reason"]
    assert tiny["status"] == "too_small" and "30x30" in tiny["reason"]


def test_several_faces_policy_and_count(tmp_path):
    canvas = np.full((600, 1000, 3), 90, np.uint8)
    canvas[50:550, 20:520] = cv2.resize(ASTRONAUT[:, :, ::-1], (500, 500))
    canvas[200:450, 650:900] = cv2.resize(ASTRONAUT[:, :, ::-1], (250, 250))
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    largest = FaceCropper(96, 0.3, 40, 0.9, face_policy="largest").crop_one(str(path))
    assert largest["status"] == "ok" and largest["n_faces"] == 2
    assert largest["box"][0] < 520  # the big face, on the left


def test_file_system_kinds_are_rows_with_reasons(tmp_path):
    root = tmp_path / "data"
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
        cv2.imwrite(str(root / cls / "ok.png"), ASTRONAUT)
    (tmp_path / "outside.png").write_bytes((root / "real" / "ok.png").read_bytes())
    (root / "fake" / "out.png").symlink_to(tmp_path / "outside.png")
    (root / "fake" / "in.png").symlink_to(root / "real" / "ok.png")  # inside the root: allowed
    (root / "fake" / "dangling.png").symlink_to(root / "real" / "gone.png")
    os.mkfifo(root / "fake" / "fifo.jpg")
    with open(os.path.join(os.fsencode(root / "fake"), b"\xff\xfe.png"), "wb") as fh:
        fh.write(b"x")
    (root / "fake" / "empty.png").write_bytes(b"")
    (root / "fake" / "clip.gif").write_bytes(b"GIF89a")
    rows = {Path(r["path"]).name: r for r in scan_dataset(root, "d", "source")}
    expect = {"out.png": "symlink_outside", "in.png": "pending", "dangling.png": "unreadable", "fifo.jpg": "not_a_file",
              "\\xff\\xfe.png": "pending", "empty.png": "unreadable", "clip.gif": "unsupported"}
    for name, status in expect.items():
        assert rows[name]["status"] == status, (name, rows[name])
        assert status == "pending" or rows[name]["reason"]


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv to drop to nobody")
def test_permission_denied_is_a_row_not_a_crash(tmp_path):
    # Root reads everything, so the scan runs as `nobody` in a child process.
    base = Path("/tmp") / f"dfsweep-perm-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    try:
        for cls in ("real", "fake"):
            (base / cls).mkdir(parents=True)
            cv2.imwrite(str(base / cls / "ok.png"), ASTRONAUT)
        (base / "fake" / "locked.png").write_bytes((base / "real" / "ok.png").read_bytes())
        os.chmod(base / "fake" / "locked.png", 0)
        for p in [base, base / "real", base / "fake"]:
            os.chmod(p, 0o755)
        os.chmod(base / "real" / "ok.png", 0o644)
        os.chmod(base / "fake" / "ok.png", 0o644)
        code = ("import json, sys; from dfsweep.data_pipeline.scan import scan_dataset; "
                f"print(json.dumps([r for r in scan_dataset({str(base)!r}, 'd', 'source')]))")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                             capture_output=True, text=True, cwd="/", env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert out.returncode == 0, out.stderr
        import json

        rows = {Path(r["path"]).name: r for r in json.loads(out.stdout)}
        assert rows["locked.png"]["status"] == "unreadable" and "Permission denied" in rows["locked.png"]["reason"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_near_duplicates_across_splits_are_found_and_first_is_kept():
    from dfsweep.data_pipeline.faces import dhash

    face = cv2.resize(ASTRONAUT[:, :, ::-1], (96, 96))
    ok, jpg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 70])
    reencoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    other = np.ascontiguousarray(face[:, ::-1])  # mirrored: a different image to dHash
    rows = [dict(sample_id="a", phash=dhash(face), domain="source", split="train", path="/a"),
            dict(sample_id="b", phash=dhash(reencoded), domain="target", split="test", path="/b"),
            dict(sample_id="c", phash=dhash(other), domain="source", split="test", path="/c"),
            dict(sample_id="d", phash=dhash(face), domain="source", split="train", path="/d")]  # same split as a
    found = find_near_duplicates(rows, max_bits=24)
    assert [(n.sample_id, n.kept_id, n.kept_where) for n in found] == [("b", "a", "source/train")]
    assert found[0].bits <= 24
    assert all(n.bits == 0 for n in find_near_duplicates(rows, max_bits=0))


def test_near_duplicate_matches_do_not_chain():
    # a ~ b and b ~ c, but a and c are far apart: only direct matches to kept samples count.
    bits = np.zeros((3, 256), np.uint8)
    bits[1, :20] = 1
    bits[2, :40] = 1
    rows = [dict(sample_id=s, phash=np.packbits(b).tobytes(), domain="source", split=sp, path=f"/{s}")
            for s, b, sp in zip("abc", bits, ("train", "val", "test"))]
    found = find_near_duplicates(rows, max_bits=24)
    assert [(n.sample_id, n.kept_id, n.bits) for n in found] == [("b", "a", 20)]  # c is 40 from a: kept


def _near_duplicates_one_by_one(rows: list[dict], max_bits: int) -> list:
    """The guard's rule spelled directly (its implementation before the blocked popcount): each sample in keep order
    against every kept sample of another (domain, split), bit by bit; the closest within max_bits is its match."""
    from dfsweep.data_pipeline.leakage import DOMAIN_ORDER, SPLIT_ORDER, NearDuplicate

    rows = sorted(rows, key=lambda r: (DOMAIN_ORDER[r["domain"]], SPLIT_ORDER.get(r["split"], 9), r["sample_id"]))
    bits = np.unpackbits(np.frombuffer(b"".join(r["phash"] for r in rows), np.uint8).reshape(len(rows), -1), axis=1)
    where = [f"{r['domain']}/{r['split']}" for r in rows]
    kept, out = [], []
    for i in range(len(rows)):
        others = [k for k in kept if where[k] != where[i]]
        if others:
            dist = (bits[others] != bits[i]).sum(axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= max_bits:
                k = others[j]
                out.append(NearDuplicate(rows[i]["sample_id"], rows[k]["sample_id"], where[k], rows[k]["path"],
                                         int(dist[j])))
                continue
        kept.append(i)
    return out


@pytest.mark.parametrize("max_bits", [0, 7, 24, 64])
def test_near_duplicates_match_the_one_by_one_rule(max_bits, monkeypatch):
    """Clusters of near copies (0-40 bits flipped) across splits and domains, more rows than one block, and ties:
    the same matches, kept ids and distances as the direct rule."""
    from dfsweep.data_pipeline import leakage

    monkeypatch.setattr(leakage, "BLOCK_ROWS", 256)  # several blocks and block edges with a small set
    rng = np.random.default_rng(max_bits)
    base = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    rows = []
    for i in range(1200):
        bits = np.unpackbits(base[i % 300])
        if i % 5:  # every fifth an exact copy
            bits[rng.integers(0, 256, rng.integers(1, 40))] ^= 1
        rows.append(dict(sample_id=f"s{i:05d}", phash=np.packbits(bits).tobytes(), domain=("source", "target")[i % 2],
                         split=("train", "val", "test", "adapt")[i // 2 % 4], path=f"/{i}"))
    expected = _near_duplicates_one_by_one(rows, max_bits)
    assert find_near_duplicates(rows, max_bits) == expected and len(expected) >= 10


def test_config_refuses_unknown_policies():
    from dfsweep.config import ConfigError

    with pytest.raises(ConfigError, match="near_duplicate_policy"):
        PrepareConfig(near_duplicate_policy="ignore")
    with pytest.raises(ConfigError, match="face_policy"):
        PrepareConfig(face_policy="first")


def test_video_frame_crop(cropper, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for i in range(6):
        writer.write(np.ascontiguousarray(np.roll(ASTRONAUT[:, :, ::-1], 4 * i, axis=1)))
    writer.release()
    row = cropper.crop_one(str(path), frame_index=5)
    assert row["status"] == "ok" and row["face_prob"] > 0.99
    assert cropper.crop_one(str(path), frame_index=60)["status"] == "unreadable"
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert cropper.crop_one(str(tmp_path / "junk.mp4"), frame_index=0)["status"] == "unreadable"


def _motion_photo_tail(tmp_path: Path) -> bytes:
    """What a phone's "motion photo" appends after the JPEG's end marker: a short MP4 clip."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(5):
        writer.write(np.full((64, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("tail", ["motion_photo", "random"])
def test_jpeg_with_bytes_after_its_end_marker_is_used(cropper, tmp_path, tail, progressive):
    ok, jpeg = cv2.imencode(".jpg", ASTRONAUT[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    extra = _motion_photo_tail(tmp_path) if tail == "motion_photo" else np.random.default_rng(1).bytes(5000)
    assert not extra.endswith(b"\xff\xd9")
    path = tmp_path / "appended.jpg"
    path.write_bytes(jpeg.tobytes() + extra)
    row = cropper.crop_one(str(path))
    assert row["status"] == "ok" and row["reason"] == "", row["reason"]
    bgr, _ = decode_image(path.read_bytes())
    assert np.array_equal(bgr, cv2.imdecode(jpeg, cv2.IMREAD_COLOR))  # the JPEG's own pixels, the tail ignored


def test_jpegs_cut_short_stay_truncated(cropper, tmp_path):
    # Cut mid-scan (baseline and progressive), cut inside the header, and cut after an EXIF thumbnail whose own
    # end marker sits inside the header: none of them has the image's end-of-image marker.
    ok, base = cv2.imencode(".jpg", ASTRONAUT[:, :, ::-1])
    ok, prog = cv2.imencode(".jpg", ASTRONAUT[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    thumb_path = _save(Image.fromarray(ASTRONAUT), tmp_path / "thumb.jpg",
                       exif=_exif_with_thumbnail(), quality=90)
    thumbed = Path(thumb_path).read_bytes()
    assert thumbed.index(b"\xff\xd9") < len(thumbed) // 4  # the thumbnail's end marker, early in the file
    cases = {"mid_scan.jpg": base.tobytes()[: len(base) // 2], "progressive.jpg": prog.tobytes()[: len(prog) * 3 // 4],
             "header.jpg": base.tobytes()[:200], "thumbnail.jpg": thumbed[: len(thumbed) * 2 // 3],
             "no_eoi.jpg": base.tobytes()[:-2]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        row = cropper.crop_one(str(tmp_path / name))
        assert row["status"] == "truncated" and "end-of-image" in row["reason"], (name, row["status"], row["reason"])


def _exif_with_thumbnail() -> bytes:
    """EXIF bytes holding a small JPEG thumbnail (IFD1 with JPEGInterchangeFormat), as cameras write them."""
    import struct

    ok, thumb = cv2.imencode(".jpg", cv2.resize(ASTRONAUT[:, :, ::-1], (64, 64)))
    thumb = thumb.tobytes()
    # TIFF header, IFD0 with no entries pointing to IFD1, IFD1 with the thumbnail's offset and length.
    ifd0 = struct.pack("<H", 0) + struct.pack("<I", 8 + 6)
    ifd1_entries = [(0x0201, 4, 1, 8 + 6 + 2 + 2 * 12 + 4), (0x0202, 4, 1, len(thumb))]
    ifd1 = struct.pack("<H", len(ifd1_entries)) + b"".join(struct.pack("<HHII", *e) for e in ifd1_entries)
    ifd1 += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumb


def test_escaped_paths_are_reversible():
    from dfsweep.data_pipeline.paths import escape_path, unescape_path

    names = [b"plain.png", "caf\u00e9.png".encode(), b"caf\xe9.png", b"\xff\xfe.png", b"back\\slash.png",
             b"\\x41.png", b"A.png", b"\\\xff.png", b"dir/\xc3(/x.png"]
    shown = [escape_path(os.fsdecode(n)) for n in names]
    assert shown[:5] == ["plain.png", "caf\u00e9.png", "caf\\xe9.png", "\\xff\\xfe.png", "back\\\\slash.png"]
    assert len(set(shown)) == len(names)  # a literal "\\x41" and an "A" never meet
    for name, text in zip(names, shown):
        text.encode("utf-8")  # storable in a pyarrow string column
        assert os.fsencode(unescape_path(text)) == name
        assert escape_path(name) == text  # bytes give the same form as their surrogate-escaped str


def test_file_names_that_are_not_utf8_are_read_and_shown_escaped(cropper, tmp_path):
    import pyarrow as pa

    from dfsweep import schema

    root = tmp_path / "data"
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
    cv2.imwrite(str(root / "real" / "ok.png"), ASTRONAUT[:, :, ::-1])
    fake = os.fsencode(root / "fake")
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(ASTRONAUT[:, ::-1, ::-1]))
    with open(os.path.join(fake, b"caf\xe9.jpg"), "wb") as fh:  # Latin-1 e-acute: not UTF-8
        fh.write(jpeg.tobytes())
    with open(os.path.join(fake, b"\xff back\\slash.png"), "wb") as fh:
        fh.write(cv2.imencode(".png", cv2.resize(ASTRONAUT[:, :, ::-1], (400, 400)))[1].tobytes())
    video = os.path.join(fake, b"clip\xe9.avi")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for i in range(4):
        writer.write(np.ascontiguousarray(np.roll(cv2.resize(ASTRONAUT[:, :, ::-1], (256, 256)), 5 * i, axis=1)))
    writer.release()
    os.rename(tmp_path / "clip.avi", video)

    rows = scan_dataset(root, "d", "source", video_frames=2)
    shown = {r["path"]: r for r in rows}
    base = str(root / "fake")
    for name in ("caf\\xe9.jpg", "\\xff back\\\\slash.png", "clip\\xe9.avi"):
        assert f"{base}/{name}" in shown, sorted(shown)
    assert [r["status"] for r in rows] == ["pending"] * 5 and not any(r["reason"] for r in rows)
    assert sum(r["path"].endswith("clip\\xe9.avi") for r in rows) == 2  # two frames of the video
    table = pa.Table.from_pylist(rows, schema=schema.MANIFEST)  # a pyarrow string column takes every path
    out = cropper(table).to_pylist()  # the crop step opens each file from its manifest form
    assert {o["path"]: o["status"] for o in out} == {r["path"]: "ok" for r in rows}
