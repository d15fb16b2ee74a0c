"""`dfsweep prepare`: scan -> manifest.parquet -> Ray Data map_batches(MTCNN actors) -> crops/*.parquet.

Every manifest row ends with a status: `ok` rows have exactly one crop row; every other row says why not.
Detection results are cached per sample (content hash) in detections/<settings>/part-*.parquet, written by the
actors batch by batch, so a killed prepare resumes where it stopped and unchanged data is never detected twice.
The driver only ever holds the small outcome columns; crops stream from the parts into crops/ one part at a time.

The splits are drawn among the usable crops, once detection is done (scan.draw_splits: seeded, group-disjoint,
label-stratified), so files without a face never leave a split without a class; the leakage guard then runs on
those final splits. A cached detection keeps its outcome, never its split or label: both are this manifest's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from dfsweep import events, schema
from dfsweep.config import PrepareConfig
from dfsweep.crops import read_crops, write_shards
from dfsweep.data_pipeline.faces import INPUT_COLUMNS, OUTCOME_COLUMNS, FaceCropper
from dfsweep.data_pipeline.leakage import NearDuplicate, find_near_duplicates
from dfsweep.data_pipeline.scan import DatasetError, build_manifest, draw_splits
from dfsweep.storage import Location

# Every one of these needs crops of both classes for a trial to train, select and be scored.
REQUIRED_SPLITS = ("source/train", "source/val", "source/test", "target/test")
# The settings that change a crop; the detection cache is keyed by them.
CROP_SETTINGS = ("crop_size_px", "face_margin", "min_face_px", "min_face_prob", "face_policy")
# progress(stage, done, total), for a display (orchestrator.progress.PrepareProgress): "scan" (0, 0) as the datasets
# are scanned, "scanned" (sampled files, all files), "detect" (faces detected so far, faces to detect) per batch,
# "write" (0, crops) as the crops are written.
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class Accounting:
    """inputs = crops + rejects; `by_status` counts every manifest row by its final status."""

    inputs: int
    crops: int
    by_status: dict[str, int]
    by_split: dict[str, int]
    detected_now: int = 0  # samples that went through MTCNN in this call (the rest came from the cache)

    @property
    def balanced(self) -> bool:
        return self.inputs == sum(self.by_status.values()) and self.crops == self.by_status.get(schema.STATUS_OK, 0)


def read_manifest(run: schema.RunDir) -> pa.Table:
    return schema.validate_table(run.manifest.read_parquet(), schema.MANIFEST, str(run.manifest))


def accounting(manifest: pa.Table, crops_rows: int, detected_now: int = 0) -> Accounting:
    status = Counter(manifest.column("status").to_pylist())
    ok = manifest.filter(pc.equal(manifest.column("status"), schema.STATUS_OK))
    split = Counter(f"{d}/{s}" for d, s in zip(ok.column("domain").to_pylist(), ok.column("split").to_pylist()))
    return Accounting(inputs=manifest.num_rows, crops=crops_rows, by_status=dict(status),
                      by_split=dict(sorted(split.items())), detected_now=detected_now)


def check_usable(manifest: pa.Table) -> None:
    """Refuse, with the counts, crops that cannot support a trial (a split without both classes)."""
    ok = manifest.filter(pc.equal(manifest.column("status"), schema.STATUS_OK))
    have = Counter(f"{d}/{s}/{lab}" for d, s, lab in zip(*(ok.column(c).to_pylist() for c in ("domain", "split", "label"))))
    short = [f"{name} ({have[name + '/0']} real, {have[name + '/1']} fake)" for name in REQUIRED_SPLITS
             if not (have[name + "/0"] and have[name + "/1"])]
    if short:
        rejects = Counter(manifest.column("status").to_pylist())
        raise DatasetError(f"after face detection these splits lack a class: {', '.join(short)}; "
                           f"statuses of all files: {dict(rejects)}")


def crop_settings(cfg: PrepareConfig) -> dict:
    """What a model trained on these crops needs to make its own (schema.MODEL_CARD_CROP_KEYS); written beside the
    crops as crops/_SETTINGS.json, read by the trials into their model cards."""
    return {k: asdict(cfg)[k] for k in schema.MODEL_CARD_CROP_KEYS}


def _settings_key(cfg: PrepareConfig) -> str:
    settings = {k: asdict(cfg)[k] for k in CROP_SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _signature(manifest: pa.Table, cfg: PrepareConfig) -> str:
    """What the finished crops were made from: every sampled file, its split, and the crop settings."""
    cols = [manifest.column(c).to_pylist() for c in ("sample_id", "split", "status", "path")]
    text = "\n".join("\t".join(map(str, r)) for r in sorted(zip(*cols)))
    return hashlib.sha256((text + json.dumps(asdict(cfg), sort_keys=True)).encode()).hexdigest()


def _cached_ids(parts_dir: Location) -> set[str]:
    return {sid for f in parts_dir.glob("part-*.parquet")
            for sid in f.read_parquet(columns=["sample_id"]).column("sample_id").to_pylist()}


def _detect_with_ray(todo: pa.Table, cfg: PrepareConfig, parts_dir: Location, progress: Progress = _no_progress) -> None:
    """MTCNN actor pool over the rows to detect; each batch lands in parts_dir as one Parquet part."""
    import ray

    from dfsweep.cluster import ensure_ray

    ensure_ray()
    n = todo.num_rows
    block_rows = max(1, min(cfg.face_batch_size, -(-n // (cfg.face_workers * 4))))
    blocks = [todo.slice(i, block_rows) for i in range(0, n, block_rows)]
    device = "cuda" if cfg.gpus_per_face_worker > 0 else "cpu"
    outcome = ray.data.from_arrow(blocks).map_batches(
        FaceCropper,
        fn_constructor_kwargs=dict(crop_size_px=cfg.crop_size_px, margin=cfg.face_margin, min_face_px=cfg.min_face_px,
                                   min_face_prob=cfg.min_face_prob, device=device, face_policy=cfg.face_policy,
                                   parts_dir=str(parts_dir)),
        batch_size=cfg.face_batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.face_workers),
        num_cpus=cfg.cpus_per_face_worker,
        num_gpus=cfg.gpus_per_face_worker or None,
    )
    done = 0
    progress("detect", 0, n)
    for batch in outcome.iter_batches(batch_format="pyarrow", batch_size=None):
        done += batch.num_rows  # its actor wrote it to parts_dir before handing it on
        events.emit("detected", rows=done)
        progress("detect", done, n)
    if done != n:
        raise RuntimeError(f"face detection returned {done} rows for {n} inputs")  # a bug, never a data problem


def _read_outcomes(parts_dir: Location, wanted: set[str]) -> dict[str, dict]:
    """sample_id -> outcome row (and its part file) for the wanted samples; the first part holding a sample wins."""
    found: dict[str, dict] = {}
    for f in parts_dir.glob("part-*.parquet"):
        for row in f.read_parquet(columns=OUTCOME_COLUMNS).to_pylist():
            if row["sample_id"] in wanted and row["sample_id"] not in found:
                found[row["sample_id"]] = {**row, "part": f.name}
    return found


# The crop columns that say where a sample belongs: taken from this manifest, never from the detection cache (a
# part keeps what they were when it was detected, under another split seed or before a file moved).
IDENTITY_COLUMNS = ("dataset", "domain", "label", "split", "path")


def _write_crops(parts_dir: Location, keep: dict[str, str], identity: dict[str, dict], out: Location) -> int:
    """Stream the kept crops (sample_id -> part file) from the parts into shards of out/ (emptied first), with
    their IDENTITY_COLUMNS from `identity` (sample_id -> manifest row).

    out/ counts as complete only once the caller writes its _DONE marker: readers refuse it before that.
    """
    by_part: dict[str, list[str]] = {}
    for sid, part in keep.items():
        by_part.setdefault(part, []).append(sid)

    def kept() -> Iterator[pa.Table]:
        for part in sorted(by_part):
            table = (parts_dir / part).read_parquet(columns=schema.CROPS.names)
            table = table.filter(pc.is_in(table.column("sample_id"), pa.array(by_part[part])))
            ids = table.column("sample_id").to_pylist()
            for name in IDENTITY_COLUMNS:
                field = schema.CROPS.field(name)
                values = pa.array([identity[sid][name] for sid in ids], field.type)
                table = table.set_column(table.schema.get_field_index(name), field, values)
            yield table

    return write_shards(kept(), out)


def _final_splits(rows: list[dict], outcome: dict[str, dict], cfg: PrepareConfig) -> list[NearDuplicate]:
    """Draw the splits among the usable crops (status ok), then run the leakage guard on those splits.

    Under the "drop" policy a near-duplicate leaves the crops and the splits are drawn again among the rest,
    until the guard finds none across the final splits (each round drops at least one crop, so it ends). Returns
    every near-duplicate found (dropped, or only found under "keep" and "fail").
    """
    found: list[NearDuplicate] = []
    while True:
        draw_splits(rows, cfg, schema.STATUS_OK)
        ok = {r["sample_id"]: r for r in rows if r["status"] == schema.STATUS_OK}
        usable = [{**outcome[sid], "domain": r["domain"], "split": r["split"], "path": r["path"]}
                  for sid, r in ok.items()]
        near = find_near_duplicates(usable, cfg.near_duplicate_max_bits)
        found += near
        if not near or cfg.near_duplicate_policy != "drop":
            break
        for n in near:
            ok[n.sample_id]["status"] = schema.STATUS_NEAR_DUPLICATE
    by_id = {r["sample_id"]: r for r in rows}
    for n in found if cfg.near_duplicate_policy == "drop" else []:
        kept = by_id[n.kept_id]
        # Where the kept crop ended (the splits may have been drawn again since the match was found).
        where = f"{kept['domain']}/{kept['split']}" if kept["status"] == schema.STATUS_OK else n.kept_where
        by_id[n.sample_id]["reason"] = f"near-duplicate of {n.kept_path} ({where}), {n.bits} dHash bits apart"
    return found


def prepare(cfg: PrepareConfig, run: schema.RunDir, *, force: bool = False, log=print,
            progress: Progress = _no_progress) -> Accounting:
    """Build the manifest and the crops of one run directory; idempotent and resumable (see the module doc)."""
    run.root.mkdir()
    progress("scan", 0, 0)
    manifest = build_manifest(cfg)
    sampled = pc.sum(pc.equal(manifest.column("status"), schema.STATUS_PENDING)).as_py() or 0
    progress("scanned", sampled, manifest.num_rows)
    signature = _signature(manifest, cfg)
    if not force and run.crops_done.exists() and run.crops_done.read_text().strip() == signature:
        final = read_manifest(run)
        log(f"crops already complete in {run.crops} for these files and settings (use --force to redo)")
        if not run.crop_settings.exists():  # crops made before the settings were written beside them
            run.crop_settings.write_text(json.dumps(crop_settings(cfg), indent=2) + "\n")
        check_usable(final)
        return accounting(final, read_crops(run, columns=["sample_id"]).num_rows)

    run.crops_done.unlink(missing_ok=True)
    run.manifest.write_parquet(manifest)
    pending = manifest.filter(pc.equal(manifest.column("status"), schema.STATUS_PENDING))
    pending = pending.select(INPUT_COLUMNS)
    parts_dir = run.detections / _settings_key(cfg)
    if force:
        parts_dir.rmtree()
    cached = _cached_ids(parts_dir)
    todo = pending.filter(pc.invert(pc.is_in(pending.column("sample_id"), pa.array(sorted(cached), pa.string()))))
    conflicts = pc.sum(pc.equal(manifest.column("status"), schema.STATUS_LABEL_CONFLICT)).as_py() or 0
    log(f"manifest: {manifest.num_rows} files, {pending.num_rows} sampled"
        + (f", {conflicts} in label conflict (the same file as real and fake: not used)" if conflicts else "")
        + f"; {pending.num_rows - todo.num_rows} already detected, {todo.num_rows} to detect -> {run.manifest}")
    if todo.num_rows:
        _detect_with_ray(todo, cfg, parts_dir, progress)

    # The outcome of a cached sample is taken as it was; its domain, label and split are this manifest's.
    wanted = set(pending.column("sample_id").to_pylist())
    outcome = _read_outcomes(parts_dir, wanted)
    missing = wanted - set(outcome)
    if missing:
        raise RuntimeError(f"{len(missing)} sampled files have no detection result")  # a bug, never a data problem
    rows = manifest.to_pylist()
    for row in rows:
        if row["status"] == schema.STATUS_PENDING:
            row["status"], row["reason"] = outcome[row["sample_id"]]["status"], outcome[row["sample_id"]]["reason"]

    near = _final_splits(rows, outcome, cfg)
    if near and cfg.near_duplicate_policy == "fail":
        shown = "; ".join(f"{n.sample_id} ~ {n.kept_id} ({n.bits} bits)" for n in near[:5])
        raise DatasetError(f"{len(near)} near-duplicate crop(s) across splits or domains (policy 'fail'): {shown}")
    if near and cfg.near_duplicate_policy == "keep":
        log(f"leakage guard: {len(near)} near-duplicate(s) across splits/domains kept (policy 'keep')")

    manifest = schema.validate_table(pa.Table.from_pylist(rows, schema=schema.MANIFEST), schema.MANIFEST, "manifest")
    run.manifest.write_parquet(manifest)
    ok = {r["sample_id"]: r for r in rows if r["status"] == schema.STATUS_OK}
    progress("write", 0, len(ok))
    n_crops = _write_crops(parts_dir, {sid: outcome[sid]["part"] for sid in ok}, ok, run.crops)
    acc = accounting(manifest, n_crops, detected_now=todo.num_rows)
    if not acc.balanced:
        raise RuntimeError(f"accounting does not add up: {acc}")  # a bug, never a data problem
    run.crop_settings.write_text(json.dumps(crop_settings(cfg), indent=2) + "\n")
    run.crops_done.write_text(signature + "\n")
    check_usable(manifest)
    return acc
