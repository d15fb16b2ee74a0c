"""Walk dataset roots into the manifest: one row per input file, with a content-hash id, a sample status and a split.

A dataset root holds `real/` and `fake/` (any depth below them). An optional `groups.csv` at the root
(columns `path,group`, paths relative to the root) names groups (identities, source videos) that must never
cross splits; without it every file is its own group. Nothing here detects faces: rows to crop are `pending`.
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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
CLASS_DIRS = {"real": 0, "fake": 1}
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
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "unsupported", f"not an image file suffix: {path.suffix or '(none)'}"
    return None


def _walk_class(root: Path, class_dir: Path, label: int, groups: dict[str, str]) -> list[_Row]:
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
                continue
            rows.append(_Row(sid, str(path), label, groups.get(rel, sid), schema.STATUS_PENDING, ""))
    return rows


def scan_dataset(root: str | Path, dataset: str, domain: str) -> list[dict]:
    """Every file under root/real and root/fake as a manifest row (split still empty)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} ({domain}) does not exist or is not a folder")
    missing = [d for d in CLASS_DIRS if not (root / d).is_dir()]
    if missing:
        raise DatasetError(f"dataset root {root} ({domain}) has no {' or '.join(m + '/' for m in missing)} folder; "
                           f"expected {root}/real/ and {root}/fake/")
    groups = _read_groups(root)
    rows: list[dict] = []
    for class_name, label in CLASS_DIRS.items():
        class_rows = _walk_class(root, root / class_name, label, groups)
        if not any(r.status == schema.STATUS_PENDING for r in class_rows):
            raise DatasetError(f"{root}/{class_name}/ holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        rows += [dict(sample_id=r.sample_id, path=r.path, dataset=dataset, domain=domain, label=r.label, group=r.group,
                      split="", status=r.status, reason=r.reason) for r in class_rows]
    return rows


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


def _cap(rows: list[dict], cap: int, seed: int) -> None:
    """Keep `cap` pending rows per class, chosen by a seeded hash of the sample id (not by file order)."""
    if cap <= 0:
        return
    for label in CLASS_DIRS.values():
        pending = [r for r in rows if r["label"] == label and r["status"] == schema.STATUS_PENDING]
        pending.sort(key=lambda r: _unit_hash(seed, r["sample_id"]))
        for r in pending[cap:]:
            r["status"] = schema.STATUS_NOT_SAMPLED
            r["reason"] = f"over the per-class cap of {cap}"


def _split(rows: list[dict], fractions: dict[str, float], seed: int) -> None:
    """Assign whole groups to splits in seeded-hash order until each split holds its share of the samples.

    The last split in `fractions` takes the rest. Groups never straddle splits.
    """
    pending = [r for r in rows if r["status"] == schema.STATUS_PENDING]
    by_group: dict[str, list[dict]] = {}
    for r in pending:
        by_group.setdefault(r["group"], []).append(r)
    order = sorted(by_group, key=lambda g: _unit_hash(seed, g))
    names = list(fractions)
    wanted = {n: fractions[n] * len(pending) for n in names[:-1]}
    filled = dict.fromkeys(names, 0)
    current = 0
    for g in order:
        while current < len(names) - 1 and filled[names[current]] >= wanted[names[current]]:
            current += 1
        for r in by_group[g]:
            r["split"] = names[current]
        filled[names[current]] += len(by_group[g])


def build_manifest(cfg: PrepareConfig) -> pa.Table:
    """Scan both roots, drop exact duplicates, cap per class and split; every file is one row."""
    if not cfg.source or not cfg.target:
        raise DatasetError("both prepare.source and prepare.target must be set (dataset roots with real/ and fake/)")
    source = scan_dataset(cfg.source, cfg.source_name, "source")
    target = scan_dataset(cfg.target, cfg.target_name, "target")
    _mark_duplicates(source + target)
    _cap(source, cfg.source_per_class_cap, cfg.split_seed)
    _cap(target, cfg.target_per_class_cap, cfg.split_seed)
    _split(source, {"test": cfg.source_test_fraction, "val": cfg.source_val_fraction,
                    "train": 1 - cfg.source_test_fraction - cfg.source_val_fraction}, cfg.split_seed)
    _split(target, {"adapt": cfg.target_adapt_fraction, "test": 1 - cfg.target_adapt_fraction}, cfg.split_seed)
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
