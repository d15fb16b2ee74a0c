"""Walk dataset roots into the manifest: one row per input file (per sampled frame of a video), with a
content-hash id, a sample status and a split.

Where a root keeps its real and fake files is its layout (layouts.py: `real/` + `fake/`, or one of the paper's
Kaggle sets). An optional `groups.csv` at the root (columns `path,group`, paths relative to the root; a name that
is not UTF-8 spelled as the manifest shows it, paths.escape_path) names groups (identities, source videos) that
must never cross splits; without it every image is its own group and every video one group.

Nothing here detects faces: rows to crop are `pending`. The per-class caps choose which files go to face
detection (a seeded hash of the content, never file order); a file without a usable face is not replaced, so a
class may end with fewer crops than its cap. The split drawn here among the pending files is a plan, checked
early; prepare draws the final split with the same `draw_splits` among the usable crops after face detection,
so rejects never empty a split of one class.
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
from dfsweep.data_pipeline.paths import escape_path

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


def _group_of(groups: dict[str, str], rel: str, default: str) -> str:
    return groups.get(rel, groups.get(escape_path(rel), default))


def _file_digest(path: Path) -> str:
    """Content hash, read in chunks so a huge file never sits in memory whole."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:32]


def _path_id(rel: str) -> str:
    return "path-" + _hash_bytes(os.fsencode(rel))


def _check_file(root: Path, path: Path) -> tuple[str, str] | None:
    """(status, reason) for a path that must not be opened as an image, or None if it may be read. A name that is
    not UTF-8 is read like any other (it reaches here surrogate-escaped; the manifest shows it escaped)."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            return "symlink_outside", f"symbolic link to {escape_path(target)}, outside the dataset root: not followed"
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


def _video_rows(path: Path, shown: str, video_id: str, label: int, group: str, n_wanted: int) -> list[_Row]:
    """One pending row per sampled frame, sampled among the frames that decode (a file cut short has fewer than
    its header claims); frames share the video's group, so they never cross splits."""
    from dfsweep.data_pipeline.faces import decodable_frame_count

    n_frames, claimed = decodable_frame_count(str(path))
    if n_frames <= 0:
        why = ("not a readable video (OpenCV found no frames)" if claimed <= 0 else
               f"no frame of the video could be decoded (its header claims {claimed})")
        return [_Row(video_id, shown, label, video_id, schema.STATUS_UNREADABLE, why, video_id, -1)]
    return [_Row(_hash_bytes(f"{video_id}:{i}".encode()), shown, label, group, schema.STATUS_PENDING, "",
                 video_id, i) for i in frame_indices(n_frames, n_wanted)]


def _walk_class(root: Path, class_dir: Path, label: int, groups: dict[str, str], video_frames: int) -> list[_Row]:
    rows = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames.sort()
        for d in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / d
            shown = escape_path(path)
            sid = _path_id(str(path.relative_to(root)))
            rows.append(_Row(sid, shown, label, sid, "symlink_dir", "symbolic link to a folder: not followed"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            shown = escape_path(path)
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
                rows += _video_rows(path, shown, sid, label, _group_of(groups, rel, sid), video_frames)
            else:
                rows.append(_Row(sid, shown, label, _group_of(groups, rel, sid), schema.STATUS_PENDING, ""))
    return rows


def scan_dataset(root: str | Path, dataset: str, domain: str, *, layout: str = "auto", video_frames: int = 8,
                 keep_dataset_splits: bool = False) -> list[dict]:
    """Every file of the root's class folders as manifest rows (split empty unless the dataset's own is kept)."""
    root = Path(root).expanduser().resolve()
    shown = escape_path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {shown} ({domain}) does not exist or is not a folder")
    name, folders = resolve_layout(root, layout)
    if name is None:
        missing = [d for d in ("real", "fake") if not (root / d).is_dir()]
        if layout in ("auto", "generic") and len(missing) == 1:
            raise DatasetError(f"dataset root {shown} ({domain}) has no {missing[0]}/ folder; "
                               f"expected {shown}/real/ and {shown}/fake/")
        raise DatasetError(f"dataset root {shown} ({domain}) matches no dataset layout: {folders}")
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
            where = ", ".join(escape_path(f.path) for f in folders if f.label == label)
            raise DatasetError(f"{where} ({'real' if label == 0 else 'fake'}, layout {name}) holds no image or video "
                               f"files ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
        rows += class_rows
    return rows


def _own_split(split: str, domain: str) -> str:
    """The dataset's own split, mapped to ours: the source keeps train/val/test; the target tests on its test part,
    holds its val part out as target/val (a part of the adapt pool) and adapts on the rest."""
    if not split:
        return ""
    if domain == "source":
        return split
    return split if split in ("test", "val") else "adapt"


def _copy_id(prefix: str, row: dict) -> str:
    """A manifest id of its own for a copy that is not used (its content hash is another row's id)."""
    key = row["path"] if row["frame_index"] < 0 else f"{row['path']}:{row['frame_index']}"
    return prefix + _hash_bytes(key.encode())


def _mark_copies(rows: list[dict]) -> None:
    """Identical files (same content hash) anywhere in the run, source and target alike.

    Copies that carry different labels (the same file in real/ and fake/) are a label conflict: which label is
    true cannot be told, so every copy gets `label_conflict`, with a reason naming a copy of the other label, and
    none is used. Copies that carry one label are duplicates: the first in (domain, path) order is kept.
    """
    copies: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (schema.DOMAINS.index(r["domain"]), r["path"])):
        if row["status"] == schema.STATUS_PENDING:
            copies.setdefault(row["sample_id"], []).append(row)
    for same in copies.values():
        if len(same) < 2:
            continue
        if len({r["label"] for r in same}) > 1:
            for row in same:
                other = next(r for r in same if r["label"] != row["label"])
                more = f"; {len(same)} copies in all" if len(same) > 2 else ""
                row["status"] = schema.STATUS_LABEL_CONFLICT
                row["reason"] = (f"same content as {other['path']} ({other['domain']}, labelled "
                                 f"{schema.LABELS[other['label']]} there, {schema.LABELS[row['label']]} here{more}): "
                                 "the label is ambiguous, so no copy is used")
            for row in same:
                row["sample_id"] = _copy_id("conflict-", row)
            continue
        kept = same[0]
        for row in same[1:]:
            row["status"] = schema.STATUS_DUPLICATE
            row["reason"] = f"same content as {kept['path']}"
            row["sample_id"] = _copy_id("dup-", row)


def _cap(rows: list[dict], cap: int, seed: int) -> None:
    """Send `cap` pending rows per class to face detection, chosen by a seeded hash of the sample id (not by file
    order); the rest are `not_sampled`. The cap counts files sampled, not crops: one without a usable face is
    not replaced by another."""
    if cap <= 0:
        return
    for label in LABELS:
        pending = [r for r in rows if r["label"] == label and r["status"] == schema.STATUS_PENDING]
        pending.sort(key=lambda r: _unit_hash(seed, r["sample_id"]))
        for r in pending[cap:]:
            r["status"] = schema.STATUS_NOT_SAMPLED
            r["reason"] = f"over the per-class cap of {cap}"


def split_fractions(cfg: PrepareConfig) -> dict[str, dict[str, float]]:
    """Per domain, each split's share of the samples (the order is the order splits are seeded in)."""
    return {"source": {"test": cfg.source_test_fraction, "val": cfg.source_val_fraction,
                       "train": 1 - cfg.source_test_fraction - cfg.source_val_fraction},
            "target": {"adapt": cfg.target_adapt_fraction, "test": 1 - cfg.target_adapt_fraction}}


def _keeps_own_split(cfg: PrepareConfig, domain: str) -> bool:
    """Whether the domain's rows carry the dataset's own split (keep_dataset_splits and a layout that has one)."""
    if not cfg.keep_dataset_splits:
        return False
    root, layout = (cfg.source, cfg.source_layout) if domain == "source" else (cfg.target, cfg.target_layout)
    _, folders = resolve_layout(Path(root).expanduser().resolve(), layout)
    return isinstance(folders, list) and any(f.split for f in folders)


def draw_splits(rows: list[dict], cfg: PrepareConfig, status: str) -> None:
    """Give the rows of `status` their split, per domain, and clear every other row's split.

    Deterministic for `cfg.split_seed` (it hashes group names, never file order), group-disjoint and stratified
    by label (`_split`). build_manifest draws it among the `pending` files, prepare again among the `ok` crops
    once faces are found. A dataset's own split, where it is kept, is left as it is.
    """
    for domain, fractions in split_fractions(cfg).items():
        members = [r for r in rows if r["domain"] == domain and r["status"] == status]
        if not _keeps_own_split(cfg, domain):
            _split(members, fractions, cfg.split_seed)
            if domain == "target" and cfg.target_val_fraction > 0:
                # target/val is carved out of the adapt pool's groups in a second draw, so target test holds the
                # same samples whatever target_val_fraction is.
                share = cfg.target_val_fraction / cfg.target_adapt_fraction
                _split([r for r in members if r["split"] == "adapt"], {"adapt": 1 - share, "val": share},
                       cfg.split_seed)
    for r in rows:
        if r["status"] != status:
            r["split"] = ""


def _split(rows: list[dict], fractions: dict[str, float], seed: int) -> None:
    """Assign whole groups of `rows` to splits, stratified by label; groups never straddle splits.

    Groups are taken in seeded-hash order. First every split is seeded with groups until it holds both labels
    (a group holding both is preferred), then each remaining group goes to the split whose unmet per-label quota
    it fills most (ties: the earlier split; no quota left: the split with the most room).
    """
    pending = list(rows)
    for r in pending:
        r["split"] = ""
    by_group: dict[str, list[dict]] = {}
    for r in pending:
        by_group.setdefault(r["group"], []).append(r)
    totals = {lab: sum(r["label"] == lab for r in pending) for lab in LABELS}
    quota = {name: {lab: frac * totals[lab] for lab in LABELS} for name, frac in fractions.items()}
    counts = {g: {lab: sum(r["label"] == lab for r in members) for lab in LABELS} for g, members in by_group.items()}
    order = sorted(by_group, key=lambda g: _unit_hash(seed, g))
    names = list(fractions)
    assigned: set[str] = set()  # a set, not list.remove: linear in the groups, however many there are

    def assign(g: str, name: str) -> None:
        for r in by_group[g]:
            r["split"] = name
        for lab in LABELS:
            quota[name][lab] -= counts[g][lab]
        assigned.add(g)

    for name in names:
        have: set[int] = set()
        while have != set(LABELS):
            fits = [g for g in order if g not in assigned and any(counts[g][lab] for lab in set(LABELS) - have)]
            if not fits:
                break  # not enough groups: build_manifest reports the empty split
            g = max(fits, key=lambda g: sum(1 for lab in set(LABELS) - have if counts[g][lab]))
            have |= {lab for lab in LABELS if counts[g][lab]}
            assign(g, name)
    for g in (g for g in order if g not in assigned):
        gain = {name: sum(min(counts[g][lab], max(quota[name][lab], 0.0)) for lab in LABELS) for name in names}
        best = max(names, key=lambda name: (gain[name], -names.index(name)))
        if gain[best] <= 0:
            best = max(names, key=lambda name: (sum(quota[name].values()), -names.index(name)))
        assign(g, best)


def build_manifest(cfg: PrepareConfig) -> pa.Table:
    """Scan both roots, mark label conflicts and exact duplicates, cap per class and plan the split among the
    sampled files (prepare draws the final one among the usable crops); every file is one row."""
    if not cfg.source or not cfg.target:
        raise DatasetError("both prepare.source and prepare.target must be set (dataset roots with real/ and fake/)")
    common = dict(video_frames=cfg.video_frames, keep_dataset_splits=cfg.keep_dataset_splits)
    source = scan_dataset(cfg.source, cfg.source_name, "source", layout=cfg.source_layout, **common)
    target = scan_dataset(cfg.target, cfg.target_name, "target", layout=cfg.target_layout, **common)
    _mark_copies(source + target)
    _cap(source, cfg.source_per_class_cap, cfg.split_seed)
    _cap(target, cfg.target_per_class_cap, cfg.split_seed)
    draw_splits(source + target, cfg, schema.STATUS_PENDING)
    for domain, rows in (("source", source), ("target", target)):
        for name in split_fractions(cfg)[domain]:
            labels = {r["label"] for r in rows if r["split"] == name and r["status"] == schema.STATUS_PENDING}
            if labels != {0, 1}:
                groups = len({r["group"] for r in rows if r["status"] == schema.STATUS_PENDING})
                raise DatasetError(f"the {domain} {name} split would hold {'no' if not labels else 'one class of'} "
                                   f"samples ({groups} groups to share out): add data or change the split fractions")
    rows = source + target
    table = pa.Table.from_pylist(rows, schema=schema.MANIFEST)
    return schema.validate_table(table, schema.MANIFEST, "manifest")
