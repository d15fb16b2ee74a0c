"""Read every trial's scores into one validated table (pyarrow only: no Ray, no TensorFlow)."""

from __future__ import annotations

import pyarrow as pa

from dfsweep import schema
from dfsweep.storage import Location, parse


def collect_scores(scores_dir: str | Location) -> pa.Table:
    """All scores/*.parquet (a local folder or a storage URI), each checked against the scores schema; a (trial,
    sample, perturbation, level) is unique."""
    files = parse(scores_dir).glob("*.parquet")
    if not files:
        raise FileNotFoundError(f"no score files in {scores_dir}; run `dfsweep run` first")
    tables = [schema.validate_table(f.read_parquet(), schema.SCORES, str(f)).select(schema.SCORES.names) for f in files]
    table = pa.concat_tables(tables)
    keys = ["trial_id", "domain", "split", "sample_id", "perturbation", "level"]
    if table.group_by(keys).aggregate([]).num_rows != table.num_rows:
        raise schema.SchemaError(f"{scores_dir}: duplicate (trial, sample, perturbation, level) rows")
    return table
