"""Read every trial's scores into one validated table (pyarrow only: no Ray, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dfsweep import schema


def collect_scores(scores_dir: str | Path) -> pa.Table:
    """All scores/*.parquet, each checked against the scores schema; a (trial, sample, perturbation, level) is unique."""
    files = sorted(Path(scores_dir).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no score files in {scores_dir}; run `dfsweep run` first")
    tables = [schema.validate_table(pq.read_table(f), schema.SCORES, str(f)).select(schema.SCORES.names) for f in files]
    table = pa.concat_tables(tables)
    keys = ["trial_id", "domain", "split", "sample_id", "perturbation", "level"]
    if table.group_by(keys).aggregate([]).num_rows != table.num_rows:
        raise schema.SchemaError(f"{scores_dir}: duplicate (trial, sample, perturbation, level) rows")
    return table
