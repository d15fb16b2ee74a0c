"""`dfsweep predict`: score new images, folders or videos with a trained model: MTCNN crop, then the model.

Given a run directory it takes the trial ranked best on SOURCE VAL (AUC from the stored val scores; never test).
Crops are made the way the model's training crops were: the crop settings of its model card
(models/<trial>.json, schema.MODEL_CARD_KEYS), then resized to its input size as a trial does.
A video gets one row per sampled frame, then its verdict row: the mean of its frames' scores, the report's rule at
the video grain (verdict/summary.py). One face per image or frame is scored, the one the model's face_policy keeps;
`all_faces` scores every face MTCNN finds, each row naming its face (index left to right, box, probability).
The rows go to a CSV (PREDICT_COLUMNS) beside the model's run unless told where.
Bad inputs get the same treatment as in prepare: a row with a status and a reason, never a crash. A model file or
model card that cannot be used (not a Keras archive, not loadable, not shaped like a detector, a card that does not
match its model) is a ModelError that says what is wrong with it; a path that does not exist, an InputError.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfsweep import schema
from dfsweep.storage import Location, parse

# The CSV's header, in this order (README "Score new files" describes it); an empty cell is "does not apply".
PREDICT_COLUMNS = (
    "file",            # the input file as given or found (a name that is not UTF-8 escaped like the manifest's paths)
    "grain",           # image: a still image's face; frame: a video frame's face; video: the video's verdict row
    "frame_index",     # the frame of the video (frame rows)
    "face_index",      # which face: 0, 1, ... left to right among the faces MTCNN found (empty: no face)
    "status",          # ok, or why it was not scored: no_face, too_small, unreadable, truncated, unsupported, ...
    "score",           # probability of fake from the model; a video row's is the mean of its scored frames' scores
    "verdict",         # fake (score >= threshold) or real; empty when not scored
    "reason",          # why not scored, in words
    "face_found",      # True when this row's face was cropped and scored
    "face_prob",       # MTCNN's probability that the box holds a face
    "n_faces",         # faces MTCNN found in the image or frame (at or above the model's min_face_prob)
    "primary_face",    # True for the face the model's face_policy keeps: the one scored without --all-faces, and
                       # the one a video's verdict averages
    "box_x1", "box_y1", "box_x2", "box_y2",  # the face's box in the image's pixels (left, top, right, bottom)
    "frames_scored",   # video rows: frames whose face was scored (the verdict averages these) ...
    "frames_sampled",  # ... of the frames sampled from the video (the model card's video_frames, evenly spaced)
)
GRAIN_IMAGE, GRAIN_FRAME, GRAIN_VIDEO = "image", "frame", "video"
STATUS_NOT_SCORED = "not_scored"  # a video none of whose sampled frames had a face that could be scored
PROGRESS_EVERY_S = 30  # at most one progress line this often (a log that CI keeps stays short)
# Exit statuses of `dfsweep predict`, for scripts.
EXIT_ALL_SCORED, EXIT_USAGE, EXIT_SOME_NOT_SCORED = 0, 2, 3
ZIP_MAGIC = b"PK\x03\x04"  # a .keras file is a zip archive (config.json, model.weights.h5, metadata.json)


class ModelError(ValueError):
    """A model file or model card that predict cannot use; the message says what is wrong with it."""


class InputError(ValueError):
    """Paths to score that are not there, or a CSV destination that cannot be written; the message names them."""


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
    # torchvision must be imported before TensorFlow in one process (the other order segfaults here).
    import torchvision  # noqa: F401

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


def _files(paths: list[str | Path]) -> list[Path]:
    """Every file given, or found under a given folder (sorted); InputError for a path that is not there or a folder
    with nothing in it, before any model is loaded."""
    from dfsweep.data_pipeline.paths import escape_path

    missing = [escape_path(str(p)) for p in paths if not Path(p).exists()]
    if missing:
        raise InputError(f"no such file or folder: {', '.join(missing)}")
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(f for f in given.rglob("*") if not f.is_dir())
            if not found:
                raise InputError(f"{escape_path(str(given))} holds no files to score")
            files += found
        else:
            files.append(given)
    return files


def _refused(path: Path) -> tuple[str, str] | None:
    """(status, reason) for a file not to open as an image or video (prepare's scan refuses the same), or None."""
    from dfsweep.data_pipeline.scan import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    try:
        mode = path.stat().st_mode
    except OSError as exc:  # a dangling link found in a folder
        return schema.STATUS_UNREADABLE, f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):  # a pipe would block the read forever
        return "not_a_file", "not a regular file (a pipe, socket or device): not read"
    if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        return "unsupported", f"not an image or video file suffix: {path.suffix or '(none)'}"
    return None


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


def _row(file: str, grain: str, **fields) -> dict:
    return {**dict.fromkeys(PREDICT_COLUMNS), "file": file, "grain": grain, **fields}


def _face_rows(faces: list[dict], scores: dict[int, float], file: str, grain: str, frame: int | None,
               threshold: float) -> list[dict]:
    """The CSV rows of one image's (or frame's) crop_faces results; `scores` by position in `faces`."""
    rows = []
    for k, f in enumerate(faces):
        found = f["face_index"] >= 0
        score = scores.get(k)
        rows.append(_row(file, grain, frame_index=frame, status=f["status"], reason=f["reason"],
                         face_index=f["face_index"] if found else None, face_found=score is not None,
                         face_prob=float(f["face_prob"]) if found else None,
                         n_faces=f["n_faces"] if found else 0 if f["status"] == schema.STATUS_NO_FACE else None,
                         primary_face=bool(f["primary"]) if found else None,
                         **dict(zip(("box_x1", "box_y1", "box_x2", "box_y2"), f["box"] if found else [None] * 4)),
                         score=score, verdict="" if score is None else "fake" if score >= threshold else "real"))
    return rows


def _video_row(file: str, frame_rows: list[dict], n_sampled: int, threshold: float) -> dict:
    """A video's verdict: the mean of its frames' scores, the report's video grain (verdict/summary.py `_videos`:
    frames without a scored face have no score and are left out). A frame counts with the face the model's
    face_policy keeps, so --all-faces does not change a video's verdict."""
    counted = [r for r in frame_rows if r["primary_face"] or r["face_index"] is None]  # one per frame
    scores = [r["score"] for r in counted if r["score"] is not None]
    fields = dict(frames_scored=len(scores), frames_sampled=n_sampled)
    if not scores:
        why: dict[str, int] = {}
        for r in counted:
            why[r["status"]] = why.get(r["status"], 0) + 1
        return _row(file, GRAIN_VIDEO, status=STATUS_NOT_SCORED, verdict="", **fields,
                    reason=f"none of its {n_sampled} sampled frames had a face that could be scored ("
                           + ", ".join(f"{s}: {n}" for s, n in sorted(why.items())) + ")")
    score = float(np.mean(scores))
    return _row(file, GRAIN_VIDEO, status=schema.STATUS_OK, reason="", score=score,
                verdict="fake" if score >= threshold else "real", **fields)


def predict(model_or_run: str | Path | ChosenModel, paths: list[str | Path], *, threshold: float = 0.5,
            all_faces: bool = False, log=print) -> tuple[ChosenModel, list[dict]]:
    """Rows of PREDICT_COLUMNS: per image its face (every face with `all_faces`); per video a row per sampled frame's
    face(s), then the video's verdict row. Score at or above `threshold`: fake."""
    files = _files(paths)
    chosen = model_or_run if isinstance(model_or_run, ChosenModel) else choose_model(model_or_run)
    return chosen, _score(chosen, load_model(chosen), files, threshold=threshold, all_faces=all_faces, log=log)


def _score(chosen: ChosenModel, model, files: list[Path], *, threshold: float, all_faces: bool, log) -> list[dict]:
    from dfsweep.crops import decode_png_rgb, to_input_size
    from dfsweep.data_pipeline.faces import FaceCropper, decodable_frame_count
    from dfsweep.data_pipeline.paths import escape_path
    from dfsweep.data_pipeline.scan import VIDEO_SUFFIXES, frame_indices

    size = int(model.input_shape[1])
    crop = crop_contract(chosen, size, log)
    cropper = FaceCropper(crop_size_px=crop["crop_size_px"], margin=crop["face_margin"], min_face_px=crop["min_face_px"],
                          min_face_prob=crop["min_face_prob"], face_policy=crop["face_policy"])

    def faces_of(path: Path, frame: int, grain: str) -> list[dict]:
        faces = cropper.crop_faces(str(path), frame)
        if not all_faces:  # the one face a trial's crops hold: face_policy's (or the reason there is none)
            faces = [f for f in faces if f["primary"] or f["face_index"] < 0]
        scores = {}
        for k, f in enumerate(faces):
            if f["status"] == schema.STATUS_OK:  # one face a call: one input shape, so TensorFlow traces once
                x = to_input_size(decode_png_rgb(f["image"]), size).astype(np.float32)[None]
                scores[k] = float(np.asarray(model.predict_on_batch(x)).ravel()[0])
        return _face_rows(faces, scores, escape_path(str(path)), grain, frame if frame >= 0 else None, threshold)

    rows = []
    last_said = time.monotonic()
    for done, path in enumerate(files):
        if time.monotonic() - last_said >= PROGRESS_EVERY_S:  # a long folder says how far it is
            log(f"{done} of {len(files)} files scored")
            last_said = time.monotonic()
        is_video = path.suffix.lower() in VIDEO_SUFFIXES
        refused = _refused(path)
        if refused:
            rows.append(_row(escape_path(str(path)), GRAIN_VIDEO if is_video else GRAIN_IMAGE, status=refused[0],
                             reason=refused[1], face_found=False, verdict=""))
        elif not is_video:
            rows += faces_of(path, -1, GRAIN_IMAGE)
        else:
            n_frames, claimed = decodable_frame_count(str(path))  # sampled among the frames that decode
            if n_frames <= 0:
                why = ("not a readable video (OpenCV found no frames)" if claimed <= 0 else
                       f"no frame of the video could be decoded (its header claims {claimed})")
                rows.append(_row(escape_path(str(path)), GRAIN_VIDEO, status=schema.STATUS_UNREADABLE, reason=why,
                                 verdict="", frames_scored=0, frames_sampled=0))
                continue
            frames = frame_indices(n_frames, crop["video_frames"])
            frame_rows = [r for i in frames for r in faces_of(path, i, GRAIN_FRAME)]
            rows += frame_rows + [_video_row(escape_path(str(path)), frame_rows, len(frames), threshold)]
    return rows


def not_scored(rows: list[dict]) -> list[str]:
    """The input files that got no score: an image none of whose faces was scored, a video without a verdict."""
    scored = {r["file"] for r in rows if r["status"] == schema.STATUS_OK and r["grain"] != GRAIN_FRAME}
    return list(dict.fromkeys(r["file"] for r in rows if r["file"] not in scored))


def csv_destination(chosen: ChosenModel, out: str | Path | None = None) -> Location:
    """Where the CSV goes: `out` as given (an existing folder: a new file in it); by default predictions/ in the
    model's run (a model in a run's models/, as a run directory gives) or beside a model file given alone, never the
    folder the user stands in. A new file is named by the local time and the trial (model) and never replaces one.
    A local folder that cannot be written is an InputError now, before any scoring; a bucket is written at the end."""
    folder = parse(out) if out is not None else None
    if folder is not None and not folder.is_dir():
        _check_writable(folder.parent)
        return folder
    if folder is None:
        models = chosen.path.parent
        run = schema.RunDir(models.parent)
        folder = run.predictions if models == run.models and run.scores.is_dir() else models / "predictions"
    _check_writable(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = folder / f"{stamp}-{chosen.path.stem}.csv"
    n = 1
    while dest.exists():  # two calls in one second
        n += 1
        dest = folder / f"{stamp}-{chosen.path.stem}-{n}.csv"
    return dest


def _check_writable(folder: Location) -> None:
    if not folder.is_local:
        return
    try:
        folder.mkdir()
    except OSError as exc:
        raise InputError(f"cannot write predictions to {folder}: {exc.strerror or exc}; pass --out FILE") from None
    if not os.access(folder.path, os.W_OK):
        raise InputError(f"cannot write predictions to {folder}: the folder is not writable; pass --out FILE")


def _cell(key: str, value):
    if value is None:
        return ""
    if key in ("score", "face_prob"):
        return round(value, 4)
    if key.startswith("box_"):
        return round(value, 1)
    return value


def write_csv(rows: list[dict], path: str | Path | Location) -> Location:
    """The rows under PREDICT_COLUMNS' header, written whole or not at all (a local file or a storage URI)."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=PREDICT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(k, r.get(k)) for k in PREDICT_COLUMNS})
    dest = parse(path)
    try:
        dest.write_text(buf.getvalue())
    except OSError as exc:
        raise InputError(f"cannot write predictions to {dest}: {exc.strerror or exc}") from None
    return dest


@dataclass(frozen=True)
class Predictions:
    chosen: ChosenModel
    rows: list[dict]
    csv: Location
    not_scored: list[str]  # input files with no score (listed in rows with their reason)
    threshold: float
    all_faces: bool

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_NOT_SCORED if self.not_scored else EXIT_ALL_SCORED

    def table(self):
        """The rows as a rich table for the console: a video's verdict row in bold after its frames; the face boxes
        only with --all-faces (the CSV always has them)."""
        from rich.markup import escape
        from rich.table import Table

        def num(v, fmt=".3f"):
            return "" if v is None else format(v, fmt)

        table = Table(title=f"predictions (verdict at threshold {self.threshold})",
                      caption="* the face the model's face_policy keeps (the one scored without --all-faces; a "
                              "video's verdict averages these)"
                      if self.all_faces else None)
        for col in ("file", "frame", "face", "p(face)", *(["box"] if self.all_faces else []), "score", "verdict",
                    "reason"):
            table.add_column(col)
        for r in self.rows:
            name, why = escape(Path(r["file"]).name), escape(r["reason"] or "")  # `photo[1].png` is no markup
            if r["grain"] == GRAIN_VIDEO:
                table.add_row(name, "video", f"{r['frames_scored']}/{r['frames_sampled']} frames", "",
                              *([""] if self.all_faces else []), num(r["score"]), r["verdict"], why, style="bold")
                continue
            box = "" if r["box_x1"] is None else ",".join(f"{r[f'box_{k}']:.0f}" for k in ("x1", "y1", "x2", "y2"))
            face = "" if r["face_index"] is None else f"{r['face_index']} of {r['n_faces']}"
            face += " *" if self.all_faces and r["primary_face"] else ""
            table.add_row(name, num(r["frame_index"], "d"), face, num(r["face_prob"]),
                          *([box] if self.all_faces else []), num(r["score"]), r["verdict"], why)
        return table

    def summary(self) -> str:
        missed = f"; {len(self.not_scored)} input(s) not scored (exit status 3)" if self.not_scored else ""
        return f"{len(self.rows)} rows{missed} -> {self.csv}"


def predict_to_csv(model_or_run: str | Path, paths: list[str | Path], *, out: str | Path | None = None,
                   threshold: float = 0.5, all_faces: bool = False, log=print) -> Predictions:
    """`dfsweep predict`: check the paths, choose and check the model, check where the CSV goes, score, write the CSV.
    Anything wrong before scoring (InputError, ModelError, ...) is raised before any work is done."""
    files = _files(paths)
    chosen = choose_model(model_or_run)
    model = load_model(chosen)
    dest = csv_destination(chosen, out)
    log(f"model: {chosen.path} ({chosen.why}); scoring {len(files)} file(s) -> {dest}")
    rows = _score(chosen, model, files, threshold=threshold, all_faces=all_faces, log=log)
    return Predictions(chosen, rows, write_csv(rows, dest), not_scored(rows), threshold, all_faces)
