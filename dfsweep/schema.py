"""Every file format that stages exchange: manifest, crops, feature cache, scores, model card.

Every writer builds its table against one of these schemas and every reader checks it with `validate_table`,
so a stage can be re-run from the files of the stage before it and a broken file fails loudly, by name.
`RunDir` is the one place where the files' names inside a run are spelled.
"""

from __future__ import annotations

import pyarrow as pa

LABELS = {0: "real", 1: "fake"}
DOMAINS = ("source", "target")
# What a variant is for, written into every score row so the report finds its arms from the scores alone:
# the baseline every candidate is tested against, candidates, and diagnostics shown beside them but never tested.
ROLES = ("baseline", "candidate", "diagnostic")
# Score files written before the `role` column existed: their variants' roles as they were then.
LEGACY_ROLES = {"v1": "baseline", "cue": "diagnostic"}

# Manifest status values: "ok" rows become crops; every other value comes with a human-readable reason.
STATUS_OK = "ok"
STATUS_PENDING = "pending"  # sampled, not yet through face detection
STATUS_NOT_SAMPLED = "not_sampled"  # over the per-class cap
STATUS_UNREADABLE = "unreadable"
STATUS_NO_FACE = "no_face"
STATUS_TOO_SMALL = "too_small"
STATUS_DUPLICATE = "duplicate"  # same bytes as another input
STATUS_LABEL_CONFLICT = "label_conflict"  # same bytes as an input of the other label: no copy is used
STATUS_NEAR_DUPLICATE = "near_duplicate"  # a crop within a few dHash bits of one in another split or domain

MANIFEST = pa.schema([
    ("sample_id", pa.string()),  # content hash of the file's bytes
    ("path", pa.string()),  # absolute path, for people and thumbnails; never parsed
    ("dataset", pa.string()),
    ("domain", pa.string()),
    ("label", pa.int8()),  # 0 real, 1 fake
    ("group", pa.string()),  # samples of one group (an identity, a video) never cross splits
    ("split", pa.string()),  # train|val|test (source), adapt|val|test (target), drawn among the ok rows; "" for the rest
    ("status", pa.string()),
    ("reason", pa.string()),
    ("video_id", pa.string()),  # content hash of the video a frame comes from; "" for an image
    ("frame_index", pa.int32()),  # the frame's index in its video; -1 for an image
])

CROPS = pa.schema([
    ("sample_id", pa.string()),
    ("dataset", pa.string()),
    ("domain", pa.string()),
    ("label", pa.int8()),
    ("split", pa.string()),
    ("image", pa.binary()),  # PNG, lossless, RGB, height x width
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("box", pa.list_(pa.float32(), 4)),  # x1, y1, x2, y2 of the detected face in the original image
    ("face_prob", pa.float32()),
    ("landmarks", pa.list_(pa.float32(), 10)),  # 5 (x, y) points in the original image
    ("n_faces", pa.int16()),  # faces MTCNN found above the probability threshold; one is kept (face_policy)
    ("phash", pa.binary()),  # 256-bit difference hash of the crop (32 bytes), for the near-duplicate leakage guard
    ("path", pa.string()),
    ("video_id", pa.string()),
    ("frame_index", pa.int32()),
])

# features/<key>/<set>.npy + <set>.ids.parquet: frozen-backbone embeddings, a float32 (n, 2048) .npy written batch by
# batch (row i is sample i of the set) and the set's sample_ids in that order, so a trial reads rows as it needs them.
FEATURE_IDS = pa.schema([("sample_id", pa.string())])

SCORES = pa.schema([
    ("trial_id", pa.string()),
    ("variant", pa.string()),
    ("augmentation", pa.string()),
    ("seed", pa.int64()),
    ("dataset", pa.string()),
    ("domain", pa.string()),
    ("split", pa.string()),
    ("sample_id", pa.string()),
    ("label", pa.int8()),
    ("perturbation", pa.string()),  # "none" or a key of perturbations.PERTURBATIONS
    ("level", pa.int32()),  # the perturbation's level (JPEG quality, blur kernel, noise sigma); 0 for none
    ("score", pa.float32()),  # probability of fake
    ("video_id", pa.string()),  # the video a frame comes from ("" for an image): video-level metrics group by it
    ("role", pa.string()),  # the variant's role (ROLES); "" in files from before roles: see role_of
    # The trial's arm: its grid point's id (orchestrator/sweep.arm_name; "none" for V1 and cue); "" in files from
    # before arms, whose arm was their augmentation (see arm_of).
    ("arm", pa.string()),
])

# Columns a file may lack (written before they existed, or by a tool that has none to give): filled on read.
OPTIONAL_DEFAULTS = {"video_id": "", "role": "", "arm": ""}


def arm_of(augmentation: str, arm: str) -> str:
    """A score row's arm: its own, or (older files, arm "") its augmentation, which was the only axis then."""
    return arm or augmentation


def scores_schema(*, video: bool = True) -> pa.Schema:
    """SCORES, or SCORES without its optional columns (video_id, role, arm: for minimal writers of image-only
    scores)."""
    return SCORES if video else pa.schema([f for f in SCORES if f.name not in OPTIONAL_DEFAULTS])


def role_of(variant: str, role: str) -> str:
    """A score row's role: its own, or (older files, role "") the one its variant had before roles were written."""
    return role or LEGACY_ROLES.get(variant, "candidate")


# models/<trial_id>.json beside models/<trial_id>.keras: what the model is and the input contract `predict` needs
# to make the crops it was trained on (the crop settings of prepare, the input size and pixel range of train).
MODEL_CARD_KEYS = ("trial_id", "variant", "augmentation", "seed", "role", "input_size_px", "pixel_range", "weights",
                   "chosen_epoch", "source_val_auc", "crop")
# Written since arms exist (cards from before lack them): the grid point, and the split the epoch was chosen on with
# its AUC there (source_val_auc is always the source val AUC of the chosen model).
MODEL_CARD_ARM_KEYS = ("arm", "unfreeze_layers", "adapt_share", "selection", "selection_auc")
MODEL_CARD_CROP_KEYS = ("crop_size_px", "face_margin", "min_face_px", "min_face_prob", "face_policy", "video_frames")


def validate_model_card(card: dict, name: str) -> dict:
    """The card, or SchemaError naming the missing keys. `crop` is None when the crops were made before prepare
    wrote their settings (crops/_SETTINGS.json); `predict` then says it falls back to prepare's defaults."""
    missing = [k for k in MODEL_CARD_KEYS if k not in card]
    crop = card.get("crop")
    missing += [f"crop.{k}" for k in MODEL_CARD_CROP_KEYS if k not in crop] if isinstance(crop, dict) else []
    if missing:
        raise SchemaError(f"{name}: model card lacks {missing} (written by an older dfsweep? re-run the trial)")
    return card


class SchemaError(ValueError):
    """A table does not match the schema of the file it claims to be."""


def validate_table(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Return `table` with columns in schema order and types cast to the schema, or raise SchemaError naming what is wrong.

    Extra columns are kept after the declared ones (later stages may add some); a missing column with an entry
    in OPTIONAL_DEFAULTS is filled with its default; other missing ones and uncastable types are errors, and so
    are nulls in a declared column.
    """
    for f in schema:
        if f.name not in table.column_names and f.name in OPTIONAL_DEFAULTS:
            table = table.append_column(f.name, pa.array([OPTIONAL_DEFAULTS[f.name]] * table.num_rows, f.type))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"{name}: missing column(s) {missing}; has {table.column_names}")
    columns, fields = [], []
    for f in schema:
        col = table.column(f.name)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{name}: column {f.name!r} has type {col.type}, expected {f.type}") from exc
        if col.null_count:
            raise SchemaError(f"{name}: column {f.name!r} has {col.null_count} null value(s)")
        columns.append(col)
        fields.append(f)
    for extra in table.column_names:
        if extra not in schema.names:
            columns.append(table.column(extra))
            fields.append(table.schema.field(extra))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


SCORES_PLAN = "_PLAN.json"  # in scores/: the sweep's planned trials (`_` keeps it out of Parquet folder reads)
SCORES_SET_ASIDE = "_bad"  # in scores/: score files that did not read back, as <name>.<UTC time>, for a post-mortem


class RunDir:
    """Where each stage's files live inside one run directory (the only place file names are spelled).

    The run directory is a local path or a storage URI (s3://bucket/prefix, gs://...); every name below is a
    `storage.Location` on it, so each stage reads and writes the same way on a laptop and on a cluster.
    """

    def __init__(self, root) -> None:
        from dfsweep.storage import parse

        self.root = parse(root)
        self.config = self.root / "config.yaml"
        self.manifest = self.root / "manifest.parquet"
        self.detections = self.root / "detections"  # MTCNN results per batch, keyed by the crop settings
        self.crops = self.root / "crops"
        self.crops_done = self.crops / "_DONE"
        self.crop_settings = self.crops / "_SETTINGS.json"  # prepare's crop settings, copied into model cards
        self.scores = self.root / "scores"
        self.scores_set_aside = self.scores / SCORES_SET_ASIDE
        self.models = self.root / "models"
        self.tune = self.root / "tune"
        self.features = self.root / "features"  # frozen-backbone embedding cache shared by V1 trials
        self.summary = self.root / "summary.json"
        self.metrics_csv = self.root / "metrics.csv"
        self.predictions = self.root / "predictions"  # `dfsweep predict`'s CSVs, one per call
        self.logs = self.root / "logs"  # Ray's, Ray Data's and Tune's output, one file per command (orchestrator.runlog)

    def score_file(self, trial_id: str):
        return self.scores / f"{trial_id}.parquet"
