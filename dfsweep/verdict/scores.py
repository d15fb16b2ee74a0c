"""The verdict's input: the score files of the trials the sweep planned, read into one validated table (pyarrow only).

The table's string columns are dictionary-encoded, one dictionary per column across the files: a sample_id scored by
nine trials under nine perturbations is held once, and rows are compared and sorted on integers (`row_keys`), so the
report's memory grows with the rows by a few bytes a column, not by a Python string each.

The sweep writes its plan beside the score files (scores/_PLAN.json: the trial ids of the run's config); a score file
of a trial no longer planned (a seed or variant dropped from the config) is kept, but left out of the report and
named. A run from before plans were written has none: all its score files are reported.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dfsweep import schema
from dfsweep.storage import Location, parse

ROW_KEYS = ("trial_id", "domain", "split", "sample_id", "perturbation", "level")  # unique in the scores


PLAN_KEYS = ("trial_id", "variant", "arm", "augmentation", "unfreeze_layers", "adapt_share", "selection",
             "finetune_epochs", "finetune_lr", "seed")


def write_plan(scores_dir: str | Location, trials: list[dict], *, dfsweep_version: str) -> None:
    """scores/_PLAN.json: the sweep's trials (PLAN_KEYS: the arm's settings with each), in plan order."""
    plan = dict(dfsweep_version=dfsweep_version, trials=[{k: t[k] for k in PLAN_KEYS if k in t} for t in trials])
    (parse(scores_dir) / schema.SCORES_PLAN).write_text(json.dumps(plan, indent=1) + "\n")


def read_plan(scores_dir: str | Location) -> list[str] | None:
    """The planned trial ids, or None when the run has no plan (made before plans were written)."""
    trials = read_plan_trials(scores_dir)
    return None if trials is None else [str(t["trial_id"]) for t in trials]


def read_plan_trials(scores_dir: str | Location) -> list[dict] | None:
    """The planned trials as written (PLAN_KEYS; plans from before arms lack the arm's settings), or None when the
    run has no plan."""
    f = parse(scores_dir) / schema.SCORES_PLAN
    if not f.exists():
        return None
    try:
        trials = json.loads(f.read_text())["trials"]
        if not all(isinstance(t, dict) and "trial_id" in t for t in trials):
            raise ValueError("a trial without a trial_id")
        return trials
    except (ValueError, KeyError, TypeError) as exc:
        raise schema.SchemaError(f"{f} is not a sweep plan ({exc!r}); `dfsweep run` writes it again") from None


class ScoreFiles(NamedTuple):
    planned: list[Location]  # score files of planned trials (every score file when the run has no plan)
    not_in_sweep: list[Location]  # score files of trials the plan does not hold: kept, not reported
    unscored: list[str]  # planned trial ids without a score file (not run yet, or set aside)


def score_files(scores_dir: str | Location) -> ScoreFiles:
    files = parse(scores_dir).glob("*.parquet")
    plan = read_plan(scores_dir)
    if plan is None:
        return ScoreFiles(files, [], [])
    ids, have = set(plan), {f.stem for f in files}
    return ScoreFiles([f for f in files if f.stem in ids], [f for f in files if f.stem not in ids],
                      [t for t in plan if t not in have])


def not_in_sweep_warning(names: list[str]) -> str:
    return (f"{len(names)} score file{'s' if len(names) > 1 else ''} of trials not in this sweep "
            f"({', '.join(names)}): left out of the report (sweep.seeds, variants or augmentations no longer plan "
            "them; they stay in scores/ and count again if the config plans them again)")


def unscored_warning(trial_ids: list[str]) -> str:
    n = len(trial_ids)
    return (f"{n} planned trial{'s have' if n > 1 else ' has'} no scores yet ({', '.join(trial_ids)}): the report "
            "covers the others; `dfsweep run` runs the missing ones")


class ScoreFileError(schema.SchemaError):
    """A score file that cannot be used; `problem` says what is wrong with it, the message also what to do."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}; `dfsweep run` sets it aside (in scores/_bad/) and runs its trial again")


def read_score_file(f: Location) -> pa.Table:
    """One trial's score file, checked against the scores schema; ScoreFileError naming the file when it cannot be
    read (cut short, empty, not Parquet) or does not hold scores."""
    try:
        table = f.read_parquet()
    except (pa.ArrowException, OSError) as exc:  # ArrowInvalid for a cut or foreign file, OSError for a broken page
        raise ScoreFileError(f"{f} is not a readable score file ({exc})") from None
    try:
        return schema.validate_table(table, schema.SCORES, str(f))
    except schema.SchemaError as exc:
        raise ScoreFileError(str(exc)) from None


def encoded(column: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """The column dictionary-encoded, in one chunk (the string columns of collect_scores already are: then no copy of
    their strings is made)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)


def value_ranks(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Each row's rank among the column's distinct values (int64, 0 the smallest; equal values, equal ranks) and the
    number of distinct values: ranks compare and sort as the values do (strings as pyarrow sorts them)."""
    column = encoded(column)
    rank = pc.rank(column.dictionary, tiebreaker="dense").to_numpy().astype(np.int64) - 1
    return rank[column.indices.to_numpy()], int(rank.max(initial=-1)) + 1


def row_keys(columns: list[pa.Array | pa.ChunkedArray]) -> np.ndarray:
    """One int64 per row that compares and sorts as the rows do over `columns` (the first column first): each
    column's value ranks in mixed radix, the key so far first brought to dense ranks where the next digit would
    overflow."""
    key = np.zeros(len(columns[0]), np.int64)
    for column in columns:
        rank, n = value_ranks(column)
        if key.size and key.max() >= np.iinfo(np.int64).max // n:
            key = np.unique(key, return_inverse=True)[1].reshape(-1)  # the same order in fewer values (< the rows)
        key = key * n + rank
    return key


def read_encoded_score_file(f: Location) -> pa.Table:
    """read_score_file with the scores schema's columns only, its string columns dictionary-encoded."""
    table = read_score_file(f).select(schema.SCORES.names)
    return pa.table([encoded(c) if pa.types.is_string(c.type) else c for c in table.columns], names=table.column_names)


def collect_scores(scores_dir: str | Location) -> pa.Table:
    """The planned trials' scores/*.parquet (a local folder or a storage URI), each checked against the scores
    schema; a (trial, sample, perturbation, level) is unique and every role is one of schema.ROLES ("" in files
    from before roles). String columns are dictionary-encoded, with one dictionary per column."""
    files = score_files(scores_dir)
    if not files.planned:
        left = f" (only {len(files.not_in_sweep)} of trials not in this sweep)" if files.not_in_sweep else ""
        raise FileNotFoundError(f"no score files of the sweep's trials in {scores_dir}{left}; run `dfsweep run` first")
    table = pa.concat_tables([read_encoded_score_file(f) for f in files.planned]).unify_dictionaries().combine_chunks()
    keys = np.sort(row_keys([table.column(k) for k in ROW_KEYS]))  # a sort: faster here than np.unique's hashing
    if (keys[1:] == keys[:-1]).any():
        raise schema.SchemaError(f"{scores_dir}: duplicate (trial, sample, perturbation, level) rows")
    unknown = sorted(set(encoded(table.column("role")).dictionary.to_pylist()) - {*schema.ROLES, ""})
    if unknown:
        raise schema.SchemaError(f"{scores_dir}: unknown role(s) {unknown}; valid: {', '.join(schema.ROLES)}")
    return table
