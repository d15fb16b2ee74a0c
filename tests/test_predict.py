"""`dfsweep predict` on a model file or model card it cannot use: a clear error that says what is wrong, never a
traceback (issue 13, item 11). The end-to-end predictions are in test_flow.py."""

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfsweep import schema
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
