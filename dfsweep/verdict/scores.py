"""The verdict's input: every trial's scores/*.parquet read into one validated table (pyarrow only)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dfsweep import schema
from dfsweep.storage import Location, parse


def collect_scores(scores_dir: str | Location) -> pa.Table:
    """All scores/*.parquet (a local folder or a storage URI), each checked against the scores schema; a (trial,
    sample, perturbation, level) is unique and every role is one of schema.ROLES ("" in files from before roles)."""
    files = parse(scores_dir).glob("*.parquet")
    if not files:
        raise FileNotFoundError(f"no score files in {scores_dir}; run `dfsweep run` first")
    tables = [schema.validate_table(f.read_parquet(), schema.SCORES, str(f)).select(schema.SCORES.names) for f in files]
    table = pa.concat_tables(tables)
    keys = ["trial_id", "domain", "split", "sample_id", "perturbation", "level"]
    if table.group_by(keys).aggregate([]).num_rows != table.num_rows:
        raise schema.SchemaError(f"{scores_dir}: duplicate (trial, sample, perturbation, level) rows")
    unknown = sorted(set(pc.unique(table.column("role")).to_pylist()) - {*schema.ROLES, ""})
    if unknown:
        raise schema.SchemaError(f"{scores_dir}: unknown role(s) {unknown}; valid: {', '.join(schema.ROLES)}")
    return table
