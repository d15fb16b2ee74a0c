"""`dfsweep prepare`: scan -> manifest.parquet -> Ray Data map_batches(MTCNN actors) -> crops/*.parquet.

Every manifest row ends with a status: `ok` rows have exactly one crop row; every other row says why not.
Re-running on a run directory whose crops are complete does no detection work.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfsweep import schema
from dfsweep.config import PrepareConfig
from dfsweep.data_pipeline.faces import FaceCropper
from dfsweep.data_pipeline.scan import DatasetError, build_manifest

# Every one of these needs crops of both classes for a trial to train, select and be scored.
REQUIRED_SPLITS = ("source/train", "source/val", "source/test", "target/test")


@dataclass(frozen=True)
class Accounting:
    """inputs = crops + rejects; `by_status` counts every manifest row by its final status."""

    inputs: int
    crops: int
    by_status: dict[str, int]
    by_split: dict[str, int]

    @property
    def balanced(self) -> bool:
        return self.inputs == sum(self.by_status.values()) and self.crops == self.by_status.get(schema.STATUS_OK, 0)


def read_manifest(run: schema.RunDir) -> pa.Table:
    return schema.validate_table(pq.read_table(run.manifest), schema.MANIFEST, str(run.manifest))


def read_crops(run: schema.RunDir, columns: list[str] | None = None) -> pa.Table:
    if not run.crops_done.exists():
        raise FileNotFoundError(f"no complete crops in {run.crops}; run `dfsweep prepare` first")
    table = pq.read_table(run.crops, columns=columns)
    return table if columns else schema.validate_table(table, schema.CROPS, str(run.crops))


def accounting(manifest: pa.Table, crops_rows: int) -> Accounting:
    status = Counter(manifest.column("status").to_pylist())
    ok = pc.equal(manifest.column("status"), schema.STATUS_OK)
    split = Counter(f"{d}/{s}" for d, s in zip(manifest.filter(ok).column("domain").to_pylist(),
                                                manifest.filter(ok).column("split").to_pylist()))
    return Accounting(inputs=manifest.num_rows, crops=crops_rows, by_status=dict(status), by_split=dict(sorted(split.items())))


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


def _write_atomic(table: pa.Table, path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _crop_with_ray(pending: pa.Table, cfg: PrepareConfig, out_dir) -> pa.Table:
    """Run the MTCNN actor pool over the pending rows; write ok crops as Parquet shards, return (sample_id, status, reason)."""
    import ray

    n = pending.num_rows
    block_rows = max(1, min(cfg.face_batch_size, -(-n // (cfg.face_workers * 4))))
    blocks = [pending.slice(i, block_rows) for i in range(0, n, block_rows)]
    device = "cuda" if cfg.gpus_per_face_worker > 0 else "cpu"
    results = ray.data.from_arrow(blocks).map_batches(
        FaceCropper,
        fn_constructor_kwargs=dict(crop_size_px=cfg.crop_size_px, margin=cfg.face_margin, min_face_px=cfg.min_face_px,
                                   min_face_prob=cfg.min_face_prob, device=device),
        batch_size=cfg.face_batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.face_workers),
        num_cpus=cfg.cpus_per_face_worker,
        num_gpus=cfg.gpus_per_face_worker or None,
    ).materialize()
    ok = results.map_batches(
        lambda t: t.filter(pc.equal(t.column("status"), schema.STATUS_OK)).drop_columns(["status", "reason"]),
        batch_format="pyarrow")
    ok.write_parquet(str(out_dir))
    parts = results.select_columns(["sample_id", "status", "reason"]).to_arrow_refs()
    return pa.concat_tables(ray.get(parts))


def prepare(cfg: PrepareConfig, run: schema.RunDir, *, force: bool = False, log=print) -> Accounting:
    """Build the manifest and the crops of one run directory (idempotent: finished crops are not redone)."""
    run.root.mkdir(parents=True, exist_ok=True)
    if run.crops_done.exists() and run.manifest.exists() and not force:
        manifest = read_manifest(run)
        log(f"crops already complete in {run.crops} (use --force to redo)")
        check_usable(manifest)
        return accounting(manifest, read_crops(run, columns=["sample_id"]).num_rows)

    from dfsweep.cluster import ensure_ray

    manifest = build_manifest(cfg)
    _write_atomic(manifest, run.manifest)
    is_pending = pc.equal(manifest.column("status"), schema.STATUS_PENDING)
    pending = manifest.filter(is_pending).select(["sample_id", "path", "dataset", "domain", "label", "split"])
    log(f"manifest: {manifest.num_rows} files, {pending.num_rows} sampled for face detection -> {run.manifest}")

    if run.crops.exists():
        shutil.rmtree(run.crops)  # an unfinished earlier attempt: its shards are not trusted
    ensure_ray()
    outcome = _crop_with_ray(pending, cfg, run.crops)

    # Fold the detection outcome back into the manifest, so every file ends with a final status.
    found = {sid: (st, rs) for sid, st, rs in zip(*(outcome.column(c).to_pylist() for c in ("sample_id", "status", "reason")))}
    rows = manifest.to_pylist()
    for row in rows:
        if row["status"] == schema.STATUS_PENDING:
            row["status"], row["reason"] = found.get(row["sample_id"], ("error", "no result came back from face detection"))
    manifest = schema.validate_table(pa.Table.from_pylist(rows, schema=schema.MANIFEST), schema.MANIFEST, "manifest")
    _write_atomic(manifest, run.manifest)
    n_crops = pq.read_table(run.crops, columns=["sample_id"]).num_rows
    acc = accounting(manifest, n_crops)
    if not acc.balanced:
        raise RuntimeError(f"accounting does not add up: {acc}")  # a bug, never a data problem
    run.crops_done.write_text(f"{n_crops}\n")
    check_usable(manifest)
    return acc
