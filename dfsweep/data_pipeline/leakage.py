"""The leakage guard: near-duplicate face crops (by dHash) that sit in different splits or domains.

Exact duplicates (same bytes) are caught at scan time; here a re-encoded, resized or lightly edited copy of an
image is caught by the perceptual hash of its crop. Samples are visited in keep order (source before target;
train, val, adapt, test; then sample id): one that lies within `max_bits` of an already kept sample of another
(domain, split) is a near-duplicate of it; the rest are kept. There is no chaining: each match is direct.
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


def find_near_duplicates(rows: list[dict], max_bits: int) -> list[NearDuplicate]:
    """rows: dicts with sample_id, phash (bytes), domain, split, path (usable crops only)."""
    if len(rows) < 2:
        return []
    rows = sorted(rows, key=lambda r: (DOMAIN_ORDER[r["domain"]], SPLIT_ORDER.get(r["split"], 9), r["sample_id"]))
    bits = np.unpackbits(np.frombuffer(b"".join(r["phash"] for r in rows), np.uint8).reshape(len(rows), -1), axis=1)
    where = [f"{r['domain']}/{r['split']}" for r in rows]
    kept: list[int] = []
    out = []
    for i in range(len(rows)):
        others = [k for k in kept if where[k] != where[i]]
        if others:
            dist = (bits[others] != bits[i]).sum(axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= max_bits:
                k = others[j]
                out.append(NearDuplicate(rows[i]["sample_id"], rows[k]["sample_id"], where[k], rows[k]["path"],
                                         int(dist[j])))
                continue
        kept.append(i)
    return out
