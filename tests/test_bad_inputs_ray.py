"""The bad-input pass: `dfsweep prepare` (real MTCNN actors on Ray) over a dataset of real face photos mixed with
every kind of broken, odd or conflicting file a scraped dataset holds. It ends without a traceback, every input is a
manifest row (a crop, or a reject with its reason), inputs = crops + rejects by reason, and the run goes on because
enough usable faces remain. (Permission-denied files are tested as an unprivileged user in tests/test_ingest.py: this
test may run as root, who reads them.)"""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from dfsweep import schema
from dfsweep.cli import app
from dfsweep.data_pipeline.demo import load_orl_photo, orl_root

pytestmark = [pytest.mark.ray]


def _face(person: int, photo: int = 5) -> np.ndarray:
    """A BGR face photo of an ORL person the tiny demo does not use (its source has people 1-8, photos 1-3)."""
    return load_orl_photo(orl_root(), person, photo)


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return buf.tobytes()


def _video(path: Path, person: int, n_frames: int = 12) -> bytes:
    """An MJPG AVI of a face sliding sideways; returns its bytes."""
    face = _face(person)
    h, w = face.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for i in range(n_frames):
        writer.write(np.ascontiguousarray(np.roll(face, 2 * i, axis=1)))
    writer.release()
    return path.read_bytes()


def plant_mixed(data: Path, outside: Path) -> dict[str, str]:
    """Plant the files of the bad-input pass under data/source/{real,fake}/mixed/ (and one in data/target/real/);
    returns path under `data` (as the manifest shows it, escaped) -> expected status. `outside`: a folder outside
    the dataset (a link's target, a scratch file)."""
    outside.mkdir(parents=True, exist_ok=True)
    real, fake = data / "source" / "real" / "mixed", data / "source" / "fake" / "mixed"
    for d in (real, fake):
        d.mkdir(parents=True)
    expect: dict[str, str] = {}

    def put(folder: Path, name: str, payload: bytes, status: str) -> None:
        (folder / name).write_bytes(payload)
        expect[str((folder / name).relative_to(data))] = status

    # Broken files.
    put(fake, "zero.jpg", b"", "unreadable")
    put(fake, "cut.jpg", _jpeg(_face(9))[:2000], "truncated")
    put(fake, "page.jpg", b"<!doctype html><html><body>403 Forbidden</body></html>", "unreadable")
    put(fake, "notes.txt", b"not a picture", "unsupported")
    # Odd but usable faces: appended bytes (a phone's motion photo), CMYK, 16 bits per channel, EXIF-rotated.
    put(real, "appended.jpg", _jpeg(_face(10)) + np.random.default_rng(0).bytes(4000), "ok")
    cmyk = real / "cmyk.jpg"
    Image.fromarray(cv2.cvtColor(_face(11), cv2.COLOR_BGR2RGB)).convert("CMYK").save(cmyk, quality=92)
    expect[str(cmyk.relative_to(data))] = "ok"
    cv2.imwrite(str(real / "deep.png"), _face(12).astype(np.uint16) * 257)
    assert cv2.imread(str(real / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    expect[str((real / "deep.png").relative_to(data))] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to display
    stored = np.ascontiguousarray(np.rot90(cv2.cvtColor(_face(13), cv2.COLOR_BGR2RGB), k=1))
    Image.fromarray(stored).save(fake / "rotated.jpg", exif=exif.tobytes(), quality=92)
    expect[str((fake / "rotated.jpg").relative_to(data))] = "ok"
    # A file name that is not UTF-8 (Latin-1), kept and shown escaped.
    with open(os.path.join(os.fsencode(fake), b"caf\xe9.jpg"), "wb") as fh:
        fh.write(_jpeg(_face(14)))
    expect["source/fake/mixed/caf\\xe9.jpg"] = "ok"
    # File-system kinds: a link out of the dataset, a dangling link, a FIFO.
    cv2.imwrite(str(outside / "elsewhere.png"), _face(15))
    (fake / "link_out.png").symlink_to(outside / "elsewhere.png")
    expect["source/fake/mixed/link_out.png"] = "symlink_outside"
    (fake / "dangling.png").symlink_to(fake / "gone.png")
    expect["source/fake/mixed/dangling.png"] = "unreadable"
    os.mkfifo(fake / "pipe.jpg")
    expect["source/fake/mixed/pipe.jpg"] = "not_a_file"
    # The same file as real and as fake: a label conflict, neither copy used.
    twin = _jpeg(_face(16))
    put(real, "twin.jpg", twin, "label_conflict")
    put(fake, "twin.jpg", twin, "label_conflict")
    # The same bytes twice in one class: one copy is used, the other is a duplicate (which one: by path order).
    copy = _jpeg(_face(17))
    put(real, "a_copy.jpg", copy, "ok")
    put(real, "b_copy.jpg", copy, "duplicate")
    # A near-duplicate across domains: a source face re-encoded among the target's reals (the leakage guard drops it).
    src = sorted((data / "source" / "real").glob("*.png"))[0]
    cv2.imwrite(str(data / "target" / "real" / "copy_of_source.jpg"), cv2.imread(str(src)),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    expect["target/real/copy_of_source.jpg"] = "near_duplicate"
    # Videos: one whole, one cut short (its header over-counts its frames), one with headers and no frame.
    _video(real / "whole.avi", 18)
    _video(fake / "whole.avi", 19)
    cut = _video(outside / "cut.avi", 20)  # made outside, planted cut
    (real / "cut.avi").write_bytes(cut[: len(cut) * 3 // 4])
    (fake / "header_only.avi").write_bytes(cut[: cut.index(b"movi") + 4])
    expect["source/real/mixed/whole.avi"] = expect["source/fake/mixed/whole.avi"] = "ok"
    expect["source/real/mixed/cut.avi"] = "ok"
    expect["source/fake/mixed/header_only.avi"] = "unreadable"
    return expect


def test_a_mixed_folder_of_faces_and_broken_files_adds_up_and_the_run_goes_on(ray_session, tiny_demo, tmp_path,
                                                                                monkeypatch):
    demo, _ = tiny_demo
    data = tmp_path / "data"
    shutil.copytree(demo, data, ignore=shutil.ignore_patterns("bad"), symlinks=True)
    expect = plant_mixed(data, tmp_path / "outside")
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    run = schema.RunDir(tmp_path / "run")
    result = CliRunner().invoke(app, ["prepare", str(run.root), "--source", str(data / "source"),
                                      "--target", str(data / "target")])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Traceback" not in result.output

    manifest = pq.read_table(run.manifest).to_pylist()
    inputs = [os.fsencode(os.path.join(dp, n)).decode("utf-8", "backslashreplace")
              for d in ("source", "target") for c in ("real", "fake") for dp, dirs, files in os.walk(data / d / c)
              for n in files + [x for x in dirs if os.path.islink(os.path.join(dp, x))]]
    # Every file is a row (a video one row per sampled frame, or one row when none decodes).
    assert sorted({r["path"] for r in manifest}) == sorted(inputs)
    by_path: dict[str, list[dict]] = {}
    for r in manifest:
        by_path.setdefault(os.path.relpath(r["path"], data), []).append(r)
    for path, status in expect.items():
        got = {r["status"] for r in by_path[path]}
        assert got == {status}, (path, [(r["status"], r["reason"]) for r in by_path[path]])
        assert status == "ok" or all(r["reason"] for r in by_path[path]), path
    assert len(by_path["source/real/mixed/cut.avi"]) >= 2  # its frames that decode are sampled
    rest = {p: {r["status"] for r in rows} for p, rows in by_path.items() if p not in expect}
    assert {p: s for p, s in rest.items() if s != {"ok"}} == {}  # the demo's own photos are all used

    # inputs = crops + rejects, by reason, in the summary line and in the files.
    crops = pq.read_table(run.crops, columns=["sample_id"]).column("sample_id").to_pylist()
    ok = [r for r in manifest if r["status"] == "ok"]
    assert sorted(crops) == sorted(r["sample_id"] for r in ok)
    rejects = {}
    for r in manifest:
        if r["status"] != "ok":
            rejects[r["status"]] = rejects.get(r["status"], 0) + 1
    assert f"inputs {len(manifest)} = crops {len(ok)}" in out and "adds up" in out, out
    for status, n in rejects.items():
        assert f"{status} {n}" in out, (status, n, out)
    assert run.crops_done.exists()  # the run can go on: every split has both classes
