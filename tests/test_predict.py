"""`dfsweep predict` on a model file or model card it cannot use: a clear error that says what is wrong, never a
traceback (issue 13, item 11); and predict for people (issue 15, item 6): a video's verdict row after its frames,
--all-faces, the CSV beside the model's run, exit statuses 0 / 2 / 3. Real MTCNN and a real (tiny) Keras model; the
predictions of a trained Xception run are in test_flow.py."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfsweep import schema
from dfsweep.orchestrator.predict import PREDICT_COLUMNS
from test_cli import _one_line
from test_report import SHIFT, _write_scores

runner = CliRunner()


def _predict(model, tmp_path):
    from dfsweep.cli import app

    (tmp_path / "face.png").write_bytes(b"")
    result = runner.invoke(app, ["predict", str(model), str(tmp_path / "face.png"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output and not (tmp_path / "p.csv").exists()
    return _one_line(result.output)


def _card(**changes) -> dict:
    card = dict(trial_id="v1-none-s1", variant="v1", augmentation="none", seed=1, role="baseline", input_size_px=71,
                pixel_range="xception", weights="none", chosen_epoch=1, source_val_auc=0.9,
                crop=dict(crop_size_px=80, face_margin=0.3, min_face_px=40, min_face_prob=0.9,
                          face_policy="most_confident", video_frames=8))
    return {**card, **changes}


@pytest.mark.parametrize("content, why", [
    (b"<html><body>404 Not Found</body></html>", "it starts with b'<html><b'"),
    (b"", "it is empty"),
], ids=["html", "empty"])
def test_a_keras_file_that_is_not_a_zip_archive_is_named_with_what_it_is(tmp_path, content, why):
    model = tmp_path / "m.keras"
    model.write_bytes(content)
    out = _predict(model, tmp_path)
    assert f"{model} is not a Keras model file (a .keras file is a zip archive; {why})" in out, out


def test_a_run_whose_chosen_model_is_corrupt_names_the_file(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1,), val=True)
    run.models.mkdir()
    for tid in ("v1-none-s1", "v2-paper-s1"):
        (Path(run.models.path) / f"{tid}.keras").write_bytes(b"PK\x03")  # a download cut short
        (Path(run.models.path) / f"{tid}.json").write_text(json.dumps(_card(trial_id=tid)))
    out = _predict(run.root, tmp_path)
    assert "is not a Keras model file" in out and str(run.models) in out, out


def test_a_model_card_that_is_not_json_or_lacks_keys_is_named(tmp_path):
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("config.json", "{}")
    (tmp_path / "m.json").write_text("{not json")
    out = _predict(model, tmp_path)
    assert f"{tmp_path / 'm.json'} is not a model card (not JSON:" in out, out
    (tmp_path / "m.json").write_text(json.dumps({"trial_id": "x"}))
    out = _predict(model, tmp_path)
    assert f"{tmp_path / 'm.json'}: model card lacks" in out and "'input_size_px'" in out, out


def test_a_run_with_a_corrupt_score_file_is_a_clear_error_in_predict(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1,), val=True)
    run.models.mkdir()
    Path(run.score_file("v1-none-s1")).write_bytes(b"PAR1")
    out = _predict(run.root, tmp_path)
    assert "v1-none-s1.parquet is not a readable score file" in out, out


@pytest.mark.tf
def test_a_zip_that_keras_cannot_load_says_so(tmp_path):
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("notes.txt", "a zip, but no Keras model inside")
    out = _predict(model, tmp_path)
    assert f"cannot load {model} as a Keras model:" in out, out


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory):
    """Small Keras models that load but are no dfsweep detector, and one that is shaped like one (32 px)."""
    import torchvision  # noqa: F401  (before TensorFlow: the other order segfaults here)

    import keras

    d = tmp_path_factory.mktemp("models")
    tabular = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1, activation="sigmoid")])
    tabular.save(d / "tabular.keras")
    two_out = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    two_out.save(d / "two_out.keras")
    image = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    image.save(d / "image.keras")
    return d


@pytest.mark.tf
@pytest.mark.parametrize("name, why", [
    ("tabular", "takes input of shape (None, 10), not RGB pixels (None, size, size, 3)"),
    ("two_out", "gives output of shape (None, 2), not one probability of fake (None, 1)"),
], ids=["input", "output"])
def test_a_keras_model_that_is_no_detector_is_refused(keras_models, tmp_path, name, why):
    out = _predict(keras_models / f"{name}.keras", tmp_path)
    assert f"{keras_models / name}.keras {why}" in out, out


@pytest.mark.tf
def test_a_model_card_that_does_not_match_its_model_is_refused(keras_models, tmp_path):
    import shutil

    shutil.copy(keras_models / "image.keras", tmp_path / "image.keras")
    (tmp_path / "image.json").write_text(json.dumps(_card(input_size_px=71)))
    out = _predict(tmp_path / "image.keras", tmp_path)
    assert "takes 32 px input but its model card" in out and "says 71 px" in out, out


# --- predict for people (issue 15, item 6) ----------------------------------------------------------------------------

TRIAL = "v1-none-s1"


HIGH, WIDE = 320, 608  # small, so MTCNN is quick; the width a multiple of 16 for the video codec


def _two_faces() -> np.ndarray:
    """BGR, HIGH x WIDE: the astronaut (left, HIGH px square) and Grace Hopper (right) side by side, black beyond;
    offline photos with one face each."""
    import cv2
    import matplotlib
    from skimage import data as skdata

    astronaut = cv2.resize(skdata.astronaut()[:, :, ::-1], (HIGH, HIGH), interpolation=cv2.INTER_AREA)
    grace = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    grace = cv2.resize(grace, (round(grace.shape[1] * HIGH / grace.shape[0]), HIGH), interpolation=cv2.INTER_AREA)
    canvas = np.hstack([astronaut, grace])
    return np.ascontiguousarray(np.pad(canvas, ((0, 0), (0, WIDE - canvas.shape[1]), (0, 0))))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """two.png (two faces), noise.png (none), notes.txt, and clip.avi: 6 frames, the two faces in frames 0, 1, 3, 4
    (brightened a little more each time, so their scores differ) and flat grey (no face) in frames 2 and 5."""
    import cv2

    d = tmp_path_factory.mktemp("inputs")
    two = _two_faces()
    cv2.imwrite(str(d / "two.png"), two)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / "noise.png"), rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    (d / "notes.txt").write_text("not a picture")
    writer = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (two.shape[1], two.shape[0]))
    for i in range(6):
        writer.write(np.full_like(two, 128) if i in (2, 5) else cv2.convertScaleAbs(two, alpha=1.0, beta=12 * i))
    writer.release()
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory whose only model (v1-none-s1, beside synthetic scores) is a real, tiny Keras detector at 71 px:
    mean colour -> sigmoid, weighted on green so the two photos' faces score far apart (their crops' mean green is
    0.53 and 0.37); its card as a trial writes it."""
    import torchvision  # noqa: F401  (before TensorFlow: the other order segfaults here)

    import keras

    run = schema.RunDir(tmp_path_factory.mktemp("run"))
    _write_scores(run, SHIFT, seeds=(1,), val=True)
    inp = keras.Input((71, 71, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(x))
    dense.set_weights([np.array([[0.0], [20.0], [0.0]]), np.array([-9.0])])
    run.models.mkdir()
    model.save(Path(run.models.path) / f"{TRIAL}.keras")
    card = _card(trial_id=TRIAL, input_size_px=71)
    card["crop"]["video_frames"] = 8
    (Path(run.models.path) / f"{TRIAL}.json").write_text(json.dumps(card))
    return run


def _cli(*args, cwd: Path):
    """`dfsweep predict ARGS` run from `cwd`; (exit code, output on one line, CSV rows, CSV path) with the CSV read
    from the path the command printed."""
    import csv
    import os
    import re

    from dfsweep.cli import app

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, ["predict", *map(str, args)], env={"COLUMNS": "200"})
    finally:
        os.chdir(here)
    out = _one_line(result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    m = re.search(r"rows(?:; \d+ input\(s\) not scored \(exit status 3\))? -> (\S+\.csv)", out)
    if not m or "://" in m.group(1):
        return result.exit_code, out, None, None
    with open(m.group(1), newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == PREDICT_COLUMNS  # the documented header, in its order
        return result.exit_code, out, list(reader), Path(m.group(1))


def test_the_csv_header_is_the_documented_one_in_help_and_readme():
    from dfsweep.cli import app

    help_text = _one_line(runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output)
    readme = _one_line((Path(__file__).resolve().parents[1] / "README.md").read_text())
    assert PREDICT_COLUMNS[:5] == ("file", "grain", "frame_index", "face_index", "status")
    header = ",".join(PREDICT_COLUMNS)
    assert header in help_text.replace(", ", ",") and f"`{header}`" in readme
    assert "0 every input was scored; 3 some inputs could not be scored" in help_text
    assert "2 a usage or input error" in help_text


@pytest.fixture(scope="module")
def clip_csv(tiny_run, inputs, tmp_path_factory):
    """`dfsweep predict RUN clip.avi` without and with --all-faces: {all_faces: (exit code, output, rows, CSV path)}."""
    cwd = tmp_path_factory.mktemp("cwd")
    return {flag: _cli(tiny_run.root, inputs / "clip.avi", *(["--all-faces"] if flag else []), cwd=cwd)
            for flag in (False, True)}


@pytest.mark.tf
def test_a_video_gets_its_verdict_row_after_its_frames(tiny_run, clip_csv):
    """The video row comes after the video's frame rows; its score is the mean of the scored frames' scores, checked
    against the report's own video grain (summary._videos); frames without a face stay listed with their reason and
    are left out of the mean. A video with a verdict counts as scored: exit 0."""
    from dfsweep.verdict.summary import Group, _videos

    code, out, rows, csv_path = clip_csv[False]
    assert code == 0, out
    assert [r["grain"] for r in rows] == ["frame"] * 6 + ["video"]
    assert [r["frame_index"] for r in rows] == ["0", "1", "2", "3", "4", "5", ""]
    assert [r["status"] for r in rows[:6]] == ["ok", "ok", "no_face", "ok", "ok", "no_face"]
    assert all(r["reason"] and r["score"] == "" for r in rows[:6] if r["status"] != "ok")
    video = rows[-1]
    assert (video["status"], video["frames_scored"], video["frames_sampled"]) == ("ok", "4", "6")
    assert csv_path.parent == Path(tiny_run.predictions.path) and csv_path.name.endswith(f"-{TRIAL}.csv")
    frames = [r for r in rows[:6] if r["status"] == "ok"]
    scores = np.array([float(r["score"]) for r in frames])
    assert np.ptp(scores) > 0.05  # the frames really differ, so a mean is told from a median, a max or a first frame
    ref = _videos(Group(np.array([f"f{r['frame_index']}" for r in frames]), np.zeros(len(frames), np.int8), scores,
                        np.array(["clip"] * len(frames))), "clip")
    assert float(video["score"]) == pytest.approx(ref.score[0], abs=1e-4)  # the CSV rounds to 4 decimals
    assert video["verdict"] == ("fake" if float(video["score"]) >= 0.5 else "real")
    assert "video" in out and "4/6 frames" in out  # the table shows the verdict row too


@pytest.mark.tf
def test_all_faces_scores_every_face_and_names_it(tiny_run, inputs, tmp_path):
    """Two faces side by side: by default one row, the face the model card's face_policy keeps (most_confident);
    with --all-faces one row per face, left to right, each with its box and MTCNN probability, each scored on its own
    face (the astronaut's row scores as the astronaut's photo alone does, Grace Hopper's as hers)."""
    import cv2

    one_code, _, one, _ = _cli(tiny_run.root, inputs / "two.png", cwd=tmp_path)
    all_code, out, every, _ = _cli(tiny_run.root, inputs / "two.png", "--all-faces", cwd=tmp_path)
    assert one_code == all_code == 0, out
    assert [r["face_index"] for r in every] == ["0", "1"] and {r["n_faces"] for r in every} == {"2"}
    (primary,), (other,) = ([r for r in every if r["primary_face"] == flag] for flag in ("True", "False"))
    assert float(primary["face_prob"]) >= float(other["face_prob"])  # most_confident
    assert len(one) == 1 and one[0] == primary  # the face scored without --all-faces, row for row
    boxes = [[float(r[f"box_{k}"]) for k in ("x1", "y1", "x2", "y2")] for r in every]
    assert 0 < boxes[0][0] < boxes[0][2] < HIGH <= boxes[1][0] < boxes[1][2] < WIDE  # each box on its own photo
    assert all(float(r["face_prob"]) > 0.99 for r in every)
    # Each face alone in its own picture: its row's score is its own face's, not the other's.
    two = cv2.imread(str(inputs / "two.png"))
    alone = {}
    for name, part in (("astronaut", two[:, :HIGH]), ("grace", two[:, HIGH:])):
        cv2.imwrite(str(tmp_path / f"{name}.png"), part)
        _, _, rows, _ = _cli(tiny_run.root, tmp_path / f"{name}.png", cwd=tmp_path)
        alone[name] = float(rows[0]["score"])
    assert abs(alone["astronaut"] - alone["grace"]) > 0.2, alone  # the detector tells the two faces apart
    for row, mine, theirs in ((every[0], "astronaut", "grace"), (every[1], "grace", "astronaut")):
        assert abs(float(row["score"]) - alone[mine]) < 0.05 < abs(float(row["score"]) - alone[theirs]), (row, alone)
    assert f"{primary['face_index']} of 2 *" in out and f"{other['face_index']} of 2 " in out  # the table too


@pytest.mark.tf
def test_all_faces_leaves_a_videos_verdict_as_it_was(clip_csv):
    """Every face of every frame gets a row, yet the video's verdict still averages one face per frame (the one the
    model's crops kept): the same verdict row as without --all-faces."""
    (_, _, one, _), (code, out, every, _) = clip_csv[False], clip_csv[True]
    assert code == 0, out
    assert [(r["frame_index"], r["face_index"]) for r in every if r["grain"] == "frame"] == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1"), ("2", ""), ("3", "0"), ("3", "1"), ("4", "0"), ("4", "1"),
        ("5", "")]
    assert every[-1] == one[-1] and every[-1]["grain"] == "video"


@pytest.mark.tf
def test_exit_status_3_when_some_inputs_are_not_scored_and_each_says_why(tiny_run, inputs, tmp_path):
    import shutil

    odd = tmp_path / "noise[b].png"  # square brackets in a name are no rich markup: shown as they are
    shutil.copy(inputs / "noise.png", odd)
    code, out, rows, _ = _cli(tiny_run.root, inputs / "two.png", odd, inputs / "notes.txt", cwd=tmp_path)
    assert code == 3, out
    assert "2 input(s) not scored (exit status 3)" in out and "noise[b].png" in out
    by_file = {Path(r["file"]).name: r for r in rows}
    assert by_file["two.png"]["status"] == "ok" and by_file["two.png"]["verdict"] in ("real", "fake")
    assert by_file[odd.name]["status"] == "no_face" and "MTCNN found no face" in by_file[odd.name]["reason"]
    assert by_file["notes.txt"]["status"] == "unsupported" and ".txt" in by_file["notes.txt"]["reason"]
    assert by_file[odd.name]["score"] == by_file[odd.name]["verdict"] == ""


@pytest.mark.tf
def test_a_video_with_no_scored_frame_is_not_scored(tiny_run, tmp_path):
    import cv2

    path = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for _ in range(3):
        writer.write(np.full((128, 128, 3), 128, np.uint8))
    writer.release()
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    code, out, rows, _ = _cli(tiny_run.root, path, tmp_path / "junk.mp4", cwd=tmp_path)
    assert code == 3, out
    video = [r for r in rows if r["grain"] == "video"]
    assert [(Path(r["file"]).name, r["status"]) for r in video] == [("grey.avi", "not_scored"),
                                                                    ("junk.mp4", "unreadable")]
    assert "none of its 3 sampled frames had a face that could be scored (no_face: 3)" in video[0]["reason"]
    assert video[0]["score"] == "" and video[0]["frames_scored"] == "0"


@pytest.mark.parametrize("make, why", [
    (lambda d: d / "missing.png", "no such file or folder:"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no files to score"),
], ids=["missing", "empty-folder"])
def test_a_path_that_is_not_there_is_a_usage_error_before_any_model_is_loaded(tmp_path, make, why):
    path = make(tmp_path)
    code, out, rows, _ = _cli(tmp_path / "no-model.keras", path, cwd=tmp_path)  # the model is not even looked at
    assert code == 2 and why in out and str(path) in out and rows is None, out
    assert not (tmp_path / "predictions").exists()


@pytest.mark.tf
def test_the_csv_goes_beside_the_model_not_into_the_working_directory(tiny_run, inputs, tmp_path):
    import shutil

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # A model file given alone: predictions/ beside it.
    alone = tmp_path / "shipped"
    alone.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(Path(tiny_run.models.path) / f"{TRIAL}{suffix}", alone / f"det{suffix}")
    code, out, _, path = _cli(alone / "det.keras", inputs / "two.png", cwd=cwd)
    assert code == 0 and path.parent == alone / "predictions" and path.name.endswith("-det.csv"), out
    # A model file inside a run's models/: the run's predictions/. Two calls in one second never share a file.
    a = _cli(tiny_run.models / f"{TRIAL}.keras", inputs / "two.png", cwd=cwd)[3]
    b = _cli(tiny_run.models / f"{TRIAL}.keras", inputs / "two.png", cwd=cwd)[3]
    assert a.parent == b.parent == Path(tiny_run.predictions.path) and a != b
    # --out overrides: a file, or a folder that gets a new file.
    code, out, _, path = _cli(tiny_run.root, inputs / "two.png", "--out", "mine.csv", cwd=cwd)
    assert code == 0 and path == cwd / "mine.csv", out
    code, out, _, path = _cli(tiny_run.root, inputs / "two.png", "--out", tmp_path, cwd=cwd)
    assert code == 0 and path.parent == tmp_path and path.name.endswith(f"-{TRIAL}.csv"), out
    assert [p.name for p in cwd.iterdir()] == ["mine.csv"]  # nothing else lands where the user stands


@pytest.mark.tf
def test_a_destination_that_cannot_be_written_is_a_usage_error_before_scoring(tiny_run, inputs, tmp_path):
    import shutil

    alone = tmp_path / "shipped"
    alone.mkdir()
    shutil.copy(Path(tiny_run.models.path) / f"{TRIAL}.keras", alone / "det.keras")
    (alone / "predictions").write_text("a file where the folder would go")
    code, out, rows, _ = _cli(alone / "det.keras", inputs / "two.png", cwd=tmp_path)
    assert code == 2 and f"cannot write predictions to {alone / 'predictions'}" in out and "--out" in out, out
    assert "predictions (verdict" not in out  # refused before any scoring


@pytest.mark.tf
def test_a_run_on_s3_gets_its_csv_there(tiny_run, inputs, tmp_path, s3_bucket):
    remote = schema.RunDir(f"s3://{s3_bucket}/runs/one")
    for f in [*Path(tiny_run.scores.path).glob("*.parquet"), *Path(tiny_run.models.path).iterdir()]:
        (remote.root / f.parent.name / f.name).upload(f)
    code, out, _, _ = _cli(remote.root, inputs / "two.png", cwd=tmp_path)
    assert code == 0, out
    written = remote.predictions.glob(f"*-{TRIAL}.csv")
    assert len(written) == 1 and f"-> {written[0]}" in out, out
    lines = written[0].read_text().splitlines()
    assert tuple(lines[0].split(",")) == PREDICT_COLUMNS and len(lines) == 2
    assert list(tmp_path.iterdir()) == []  # nothing written where the user stands
