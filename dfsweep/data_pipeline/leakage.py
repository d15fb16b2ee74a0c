"""The leakage guard: near-duplicate face crops (by dHash) that sit in different splits or domains.

Exact duplicates (same bytes) are caught at scan time; here a re-encoded, resized or lightly edited copy of an
image is caught by the perceptual hash of its crop. Within one component of near-duplicates the first sample
(source before target; train, val, adapt, test; then sample id) is kept and the rest are dropped, failed on, or
only recorded, by policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLIT_ORDER = {"train": 0, "val": 1, "adapt": 2, "test": 3}
DOMAIN_ORDER = {"source": 0, "target": 1}


@dataclass(frozen=True)
class NearDuplicate:
    sample_id: str  # the one dropped (or recorded)
    kept_id: str
    kept_where: str  # "domain/split" of the kept sample
    kept_path: str
    bits: int  # dHash Hamming distance to the kept sample


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def find_near_duplicates(rows: list[dict], max_bits: int, chunk: int = 1024) -> list[NearDuplicate]:
    """rows: dicts with sample_id, phash, domain, split, path (usable crops only).

    Pairs within `max_bits` that differ in domain or split are joined into components (union-find); in each
    component the first member's (domain, split) keeps its samples and every member elsewhere is returned.
    """
    if len(rows) < 2:
        return []
    rows = sorted(rows, key=lambda r: (DOMAIN_ORDER[r["domain"]], SPLIT_ORDER.get(r["split"], 9), r["sample_id"]))
    h = np.array([r["phash"] for r in rows], dtype=np.int64).view(np.uint64)
    where = np.array([f"{r['domain']}/{r['split']}" for r in rows])
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(rows), chunk):
        block = h[start:start + chunk]
        dist = _popcount64(block[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_bits)
        for i, j in zip(ii + start, jj):
            if i < j and where[i] != where[j]:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the earlier row (in keep order) is the root
    out = []
    for i in range(len(rows)):
        root = find(i)
        if where[i] != where[root]:
            out.append(NearDuplicate(rows[i]["sample_id"], rows[root]["sample_id"], str(where[root]), rows[root]["path"],
                                     int(_popcount64(h[i:i + 1] ^ h[root:root + 1])[0])))
    return out
