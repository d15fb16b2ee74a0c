"""`dfsweep predict`: score new images, folders or videos with a trained model: MTCNN crop, then the model.

Given a run directory it takes the trial ranked best on SOURCE VAL (AUC from the stored val scores; never test).
Crops are made the way the model's training crops were: the crop settings of its model card
(models/<trial>.json, schema.MODEL_CARD_KEYS), then resized to its input size as a trial does.
Bad inputs get the same treatment as in prepare: a row with a status and a reason, never a crash. A model file or
model card that cannot be used (not a Keras archive, not loadable, not shaped like a detector, a card that does not
match its model) is a ModelError that says what is wrong with it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfsweep import schema
from dfsweep.storage import Location, parse

PREDICT_COLUMNS = ("file", "frame_index", "face_found", "status", "reason", "face_prob", "score", "verdict")
ZIP_MAGIC = b"PK\x03\x04"  # a .keras file is a zip archive (config.json, model.weights.h5, metadata.json)


class ModelError(ValueError):
    """A model file or model card that predict cannot use; the message says what is wrong with it."""


@dataclass(frozen=True)
class ChosenModel:
    path: Location
    meta: dict
    why: str


def read_model_card(path: Location) -> dict:
    """models/<trial>.json checked (schema.validate_model_card: SchemaError naming the missing keys)."""
    try:
        card = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a model card (not JSON: {exc})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{path} is not a model card (a JSON object was expected, got {type(card).__name__})")
    return schema.validate_model_card(card, str(path))


def check_model_file(path: Location) -> None:
    """A .keras file must be a zip archive: Keras's own message for anything else is "File not found"."""
    with path.fs.open_input_stream(path.path) as f:
        head = f.read(8)
    if head[:4] != ZIP_MAGIC or len(head) < 8:
        found = "it is empty" if not head else f"it starts with {head!r}"
        raise ModelError(f"{path} is not a Keras model file (a .keras file is a zip archive; {found}); export it "
                         "again (model.save('name.keras')), or re-run the trial that made it")


def load_model(chosen: ChosenModel):
    """The Keras model of `chosen`, checked to be a detector (RGB pixels in, one probability out) whose input size is
    the one its model card states."""
    check_model_file(chosen.path)
    import keras

    try:
        with chosen.path.local_copy() as local:  # Keras reads only local files
            model = keras.saving.load_model(str(local), compile=False)
    except Exception as exc:  # Keras raises many types for a file it cannot use; all mean "not this file"
        raise ModelError(f"cannot load {chosen.path} as a Keras model: {type(exc).__name__}: {exc}") from None
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if len(shape_in) != 4 or shape_in[3] != 3 or shape_in[1] is None or shape_in[1] != shape_in[2]:
        raise ModelError(f"{chosen.path} takes input of shape {shape_in}, not RGB pixels (None, size, size, 3): it is "
                         "no dfsweep detector")
    if shape_out[1:] != (1,):
        raise ModelError(f"{chosen.path} gives output of shape {shape_out}, not one probability of fake (None, 1): "
                         "it is no dfsweep detector")
    card_size = (chosen.meta or {}).get("input_size_px")
    if card_size is not None and int(card_size) != int(shape_in[1]):
        raise ModelError(f"{chosen.path} takes {shape_in[1]} px input but its model card "
                         f"({chosen.path.parent / chosen.path.stem}.json) says {card_size} px: the card belongs to "
                         "another model")
    return model


def choose_model(model_or_run: str | Path) -> ChosenModel:
    """A .keras file as given, or the run's trial with the highest source-val AUC (ties: trial id); either may be a
    local path or a storage URI."""
    p = parse(model_or_run)
    if p.suffix == ".keras" and p.is_file():
        meta_path = p.parent / f"{p.stem}.json"
        return ChosenModel(p, read_model_card(meta_path) if meta_path.exists() else {}, "model file given")
    run = schema.RunDir(p)
    if not run.models.is_dir():
        raise FileNotFoundError(f"{p} is neither a .keras model nor a run directory with models/")
    import pyarrow.compute as pc

    from dfsweep.verdict.scores import collect_scores
    from dfsweep.verdict.stats import auc

    scores = collect_scores(run.scores)
    val = scores.filter(pc.and_(pc.and_(pc.equal(scores.column("split"), "val"),
                                        pc.equal(scores.column("domain"), "source")),
                                pc.equal(scores.column("perturbation"), "none")))
    ranked = []
    for tid in sorted(set(val.column("trial_id").to_pylist())):
        sub = val.filter(pc.equal(val.column("trial_id"), tid))
        if (run.models / f"{tid}.keras").exists():
            ranked.append((auc(sub.column("label").to_numpy(), sub.column("score").to_numpy()), tid))
    if not ranked:
        raise FileNotFoundError(f"{run.models} holds no model of a trial with source-val scores")
    best_auc, tid = max(ranked, key=lambda r: (r[0], [-ord(c) for c in r[1]]))
    meta = read_model_card(run.models / f"{tid}.json")
    return ChosenModel(run.models / f"{tid}.keras", meta, f"best source-val AUC {best_auc:.3f} of {len(ranked)} trials")


def _inputs(paths: list[str | Path], video_frames: int) -> list[tuple[Path, int]]:
    """(file, frame_index) for every file given or found under a folder; videos give evenly spaced frames."""
    from dfsweep.data_pipeline.faces import decodable_frame_count
    from dfsweep.data_pipeline.scan import VIDEO_SUFFIXES, frame_indices

    found: list[tuple[Path, int]] = []
    for given in paths:
        given = Path(given)
        files = sorted(f for f in given.rglob("*") if f.is_file()) if given.is_dir() else [given]
        for f in files:
            if f.suffix.lower() in VIDEO_SUFFIXES:
                n, _claimed = decodable_frame_count(str(f))  # sampled among the frames that decode
                found += [(f, i) for i in frame_indices(n, video_frames)] or [(f, 0)]
            else:
                found.append((f, -1))
    return found


def crop_contract(chosen: ChosenModel, input_size_px: int, log=print) -> dict:
    """The crop settings to use: the model card's, or (a model without a card, or one from before cards held them)
    prepare's defaults at the model's input size, said in the log."""
    crop = (chosen.meta or {}).get("crop")
    if crop:
        return dict(crop)
    from dataclasses import asdict

    from dfsweep.config import PrepareConfig

    log(f"note: {chosen.path} has no crop settings in its model card: using prepare's defaults at {input_size_px} px")
    return dict({k: asdict(PrepareConfig())[k] for k in schema.MODEL_CARD_CROP_KEYS}, crop_size_px=input_size_px)


def predict(model_or_run: str | Path, paths: list[str | Path], *, threshold: float = 0.5,
            log=print) -> tuple[ChosenModel, list[dict]]:
    """One row per image (per sampled frame of a video): face found, score, verdict at `threshold`."""
    # torchvision must be imported before TensorFlow in one process (the other order segfaults here).
    import torchvision  # noqa: F401

    from dfsweep.crops import decode_png_rgb, to_input_size
    from dfsweep.data_pipeline.faces import FaceCropper
    from dfsweep.data_pipeline.paths import escape_path
    from dfsweep.data_pipeline.scan import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    chosen = choose_model(model_or_run)
    model = load_model(chosen)
    size = int(model.input_shape[1])
    crop = crop_contract(chosen, size, log)
    cropper = FaceCropper(crop_size_px=crop["crop_size_px"], margin=crop["face_margin"], min_face_px=crop["min_face_px"],
                          min_face_prob=crop["min_face_prob"], face_policy=crop["face_policy"])
    rows = []
    for path, frame in _inputs(paths, crop["video_frames"]):
        row = dict(file=escape_path(str(path)), frame_index=frame, face_found=False, face_prob=None, score=None, verdict="")
        if not path.exists() or path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            why = "no such file" if not path.exists() else f"not an image or video file suffix: {path.suffix or '(none)'}"
            rows.append(dict(row, status="unreadable" if not path.exists() else "unsupported", reason=why))
            continue
        out = cropper.crop_one(str(path), frame)
        row.update(status=out["status"], reason=out["reason"])
        if out["status"] == schema.STATUS_OK:
            x = to_input_size(decode_png_rgb(out["image"]), size).astype(np.float32)[None]
            score = float(model.predict(x, verbose=0).ravel()[0])
            row.update(face_found=True, face_prob=float(out["face_prob"]), score=score,  # rounded only when shown
                       verdict="fake" if score >= threshold else "real")
        rows.append(row)
    return chosen, rows


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PREDICT_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else round(r[k], 4) if k in ("face_prob", "score") else r[k]
                             for k in PREDICT_COLUMNS})
