"""Walk dataset roots into the manifest: one row per input file (per sampled frame of a video), with a
content-hash id, a sample status and a split.

Where a root keeps its real and fake files is its layout (layouts.py: `real/` + `fake/`, or one of the paper's
Kaggle sets). An optional `groups.csv` at the root (columns `path,group`, paths relative to the root) names
groups (identities, source videos) that must never cross splits; without it every image is its own group and
every video one group. Nothing here detects faces: rows to crop are `pending`.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dfsweep import schema
from dfsweep.config import PrepareConfig
from dfsweep.data_pipeline.layouts import resolve_layout

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
LABELS = (0, 1)
GROUPS_FILE = "groups.csv"


class DatasetError(ValueError):
    """A dataset root that cannot be used at all (missing folder, empty class): reported before any work."""


@dataclass(frozen=True)
class _Row:
    sample_id: str
    path: str
    label: int
    group: str
    status: str
    reason: str
    video_id: str = ""
    frame_index: int = -1


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _unit_hash(seed: int, key: str) -> int:
    """A deterministic, well-mixed integer for ordering keys under a seed (independent of file order)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def _read_groups(root: Path) -> dict[str, str]:
    path = root / GROUPS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "group"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: expected a header with columns 'path' and 'group', got {reader.fieldnames}")
        return {str(Path(r["path"])): r["group"] for r in reader}


def _file_digest(path: Path) -> str:
    """Content hash, read in chunks so a huge file never sits in memory whole."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:32]


def _path_id(rel: str) -> str:
    return "path-" + _hash_bytes(os.fsencode(rel))


def _check_file(root: Path, path: Path) -> tuple[str, str] | None:
    """(status, reason) for a path that must not be opened as an image, or None if it may be read."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "bad_filename", "file name is not valid UTF-8 (rename it to be used)"
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            return "symlink_outside", f"symbolic link to {target}, outside the dataset root: not followed"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return schema.STATUS_UNREADABLE, f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return "not_a_file", "not a regular file (a pipe, socket or device): not read"
    if path.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        return "unsupported", f"not an image or video file suffix: {path.suffix or '(none)'}"
    return None


def frame_indices(n_frames: int, n_wanted: int) -> list[int]:
    """n_wanted evenly spaced frame indices of a video with n_frames frames (all of them when it is shorter)."""
    if n_frames <= 0 or n_wanted <= 0:
        return []
    if n_frames <= n_wanted:
        return list(range(n_frames))
    return sorted({int(round(i * (n_frames - 1) / (n_wanted - 1))) for i in range(n_wanted)}) if n_wanted > 1 else [0]


def _video_rows(path: Path, video_id: str, label: int, group: str, n_wanted: int) -> list[_Row]:
    """One pending row per sampled frame; frames share the video's group, so they never cross splits."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    if n_frames <= 0:
        return [_Row(video_id, str(path), label, video_id, schema.STATUS_UNREADABLE,
                     "not a readable video (OpenCV found no frames)", video_id, -1)]
    return [_Row(_hash_bytes(f"{video_id}:{i}".encode()), str(path), label, group, schema.STATUS_PENDING, "",
                 video_id, i) for i in frame_indices(n_frames, n_wanted)]


def _walk_class(root: Path, class_dir: Path, label: int, groups: dict[str, str], video_frames: int) -> list[_Row]:
    rows = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames.sort()
        for d in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / d
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            sid = _path_id(str(path.relative_to(root)))
            rows.append(_Row(sid, shown, label, sid, "symlink_dir", "symbolic link to a folder: not followed"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            refused = _check_file(root, path)
            if refused is None:
                try:
                    if path.stat().st_size == 0:
                        refused = (schema.STATUS_UNREADABLE, "empty file (0 bytes)")
                    else:
                        sid = _file_digest(path)
                except OSError as exc:
                    refused = (schema.STATUS_UNREADABLE, f"cannot read file: {exc.strerror or exc}")
            if refused is not None:
                sid = _path_id(rel)
                rows.append(_Row(sid, shown, label, sid, *refused))
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                rows += _video_rows(path, sid, label, groups.get(rel, sid), video_frames)
            else:
                rows.append(_Row(sid, str(path), label, groups.get(rel, sid), schema.STATUS_PENDING, ""))
    return rows


def scan_dataset(root: str | Path, dataset: str, domain: str, *, layout: str = "auto", video_frames: int = 8,
                 keep_dataset_splits: bool = False) -> list[dict]:
    """Every file of the root's class folders as manifest rows (split empty unless the dataset's own is kept)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} ({domain}) does not exist or is not a folder")
    name, folders = resolve_layout(root, layout)
    if name is None:
        missing = [d for d in ("real", "fake") if not (root / d).is_dir()]
        if layout in ("auto", "generic") and len(missing) == 1:
            raise DatasetError(f"dataset root {root} ({domain}) has no {missing[0]}/ folder; "
                               f"expected {root}/real/ and {root}/fake/")
        raise DatasetError(f"dataset root {root} ({domain}) matches no dataset layout: {folders}")
    groups = _read_groups(root)
    rows: list[dict] = []
    for label in LABELS:
        class_rows = []
        for folder in (f for f in folders if f.label == label):
            for r in _walk_class(root, folder.path, label, groups, video_frames):
                split = _own_split(folder.split, domain) if keep_dataset_splits else ""
                class_rows.append(dict(sample_id=r.sample_id, path=r.path, dataset=dataset, domain=domain,
                                       label=r.label, group=r.group, split=split, status=r.status, reason=r.reason,
                                       video_id=r.video_id, frame_index=r.frame_index))
        if not any(r["status"] == schema.STATUS_PENDING for r in class_rows):
            where = ", ".join(str(f.path) for f in folders if f.label == label)
            raise DatasetError(f"{where} ({'real' if label == 0 else 'fake'}, layout {name}) holds no image or video "
                               f"files ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
        rows += class_rows
    return rows


def _own_split(split: str, domain: str) -> str:
    """The dataset's own split, mapped to ours: the source keeps train/val/test; the target tests on its test part
    and adapts on the rest."""
    if not split:
        return ""
    if domain == "source":
        return split
    return "test" if split == "test" else "adapt"


def _mark_duplicates(rows: list[dict]) -> None:
    """Identical files (same content hash) anywhere in the run: the first in (domain, path) order is kept."""
    first: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (schema.DOMAINS.index(r["domain"]), r["path"])):
        if row["status"] != schema.STATUS_PENDING:
            continue
        kept = first.setdefault(row["sample_id"], row)
        if kept is not row:
            row["status"] = schema.STATUS_DUPLICATE
            row["reason"] = f"same content as {kept['path']}"
            row["sample_id"] = "dup-" + _hash_bytes(row["path"].encode())


def _clear_unsampled_splits(rows: list[dict]) -> None:
    for r in rows:
        if r["status"] != schema.STATUS_PENDING:
            r["split"] = ""


def _cap(rows: list[dict], cap: int, seed: int) -> None:
    """Keep `cap` pending rows per class, chosen by a seeded hash of the sample id (not by file order)."""
    if cap <= 0:
        return
    for label in LABELS:
        pending = [r for r in rows if r["label"] == label and r["status"] == schema.STATUS_PENDING]
        pending.sort(key=lambda r: _unit_hash(seed, r["sample_id"]))
        for r in pending[cap:]:
            r["status"] = schema.STATUS_NOT_SAMPLED
            r["reason"] = f"over the per-class cap of {cap}"


def _split(rows: list[dict], fractions: dict[str, float], seed: int) -> None:
    """Assign whole groups to splits, stratified by label; groups never straddle splits.

    Groups are taken in seeded-hash order. First every split is seeded with groups until it holds both labels
    (a group holding both is preferred), then each remaining group goes to the split whose unmet per-label quota
    it fills most (ties: the earlier split; no quota left: the split with the most room).
    """
    pending = [r for r in rows if r["status"] == schema.STATUS_PENDING]
    if pending and all(r["split"] for r in pending):
        return  # the dataset's own split is kept
    by_group: dict[str, list[dict]] = {}
    for r in pending:
        by_group.setdefault(r["group"], []).append(r)
    totals = {lab: sum(r["label"] == lab for r in pending) for lab in LABELS}
    quota = {name: {lab: frac * totals[lab] for lab in LABELS} for name, frac in fractions.items()}
    counts = {g: {lab: sum(r["label"] == lab for r in members) for lab in LABELS} for g, members in by_group.items()}
    order = sorted(by_group, key=lambda g: _unit_hash(seed, g))
    names = list(fractions)

    def assign(g: str, name: str) -> None:
        for r in by_group[g]:
            r["split"] = name
        for lab in LABELS:
            quota[name][lab] -= counts[g][lab]
        order.remove(g)

    for name in names:
        have: set[int] = set()
        while have != set(LABELS):
            fits = [g for g in order if any(counts[g][lab] for lab in set(LABELS) - have)]
            if not fits:
                break  # not enough groups: build_manifest reports the empty split
            g = max(fits, key=lambda g: sum(1 for lab in set(LABELS) - have if counts[g][lab]))
            have |= {lab for lab in LABELS if counts[g][lab]}
            assign(g, name)
    for g in list(order):
        gain = {name: sum(min(counts[g][lab], max(quota[name][lab], 0.0)) for lab in LABELS) for name in names}
        best = max(names, key=lambda name: (gain[name], -names.index(name)))
        if gain[best] <= 0:
            best = max(names, key=lambda name: (sum(quota[name].values()), -names.index(name)))
        assign(g, best)


def build_manifest(cfg: PrepareConfig) -> pa.Table:
    """Scan both roots, drop exact duplicates, cap per class and split; every file is one row."""
    if not cfg.source or not cfg.target:
        raise DatasetError("both prepare.source and prepare.target must be set (dataset roots with real/ and fake/)")
    common = dict(video_frames=cfg.video_frames, keep_dataset_splits=cfg.keep_dataset_splits)
    source = scan_dataset(cfg.source, cfg.source_name, "source", layout=cfg.source_layout, **common)
    target = scan_dataset(cfg.target, cfg.target_name, "target", layout=cfg.target_layout, **common)
    _mark_duplicates(source + target)
    _cap(source, cfg.source_per_class_cap, cfg.split_seed)
    _cap(target, cfg.target_per_class_cap, cfg.split_seed)
    _split(source, {"test": cfg.source_test_fraction, "val": cfg.source_val_fraction,
                    "train": 1 - cfg.source_test_fraction - cfg.source_val_fraction}, cfg.split_seed)
    _split(target, {"adapt": cfg.target_adapt_fraction, "test": 1 - cfg.target_adapt_fraction}, cfg.split_seed)
    _clear_unsampled_splits(source + target)
    for domain, rows, names in (("source", source, ("train", "val", "test")), ("target", target, ("adapt", "test"))):
        for name in names:
            labels = {r["label"] for r in rows if r["split"] == name and r["status"] == schema.STATUS_PENDING}
            if labels != {0, 1}:
                groups = len({r["group"] for r in rows if r["status"] == schema.STATUS_PENDING})
                raise DatasetError(f"the {domain} {name} split would hold {'no' if not labels else 'one class of'} "
                                   f"samples ({groups} groups to share out): add data or change the split fractions")
    rows = source + target
    table = pa.Table.from_pylist(rows, schema=schema.MANIFEST)
    return schema.validate_table(table, schema.MANIFEST, "manifest")
