import pyarrow as pa
import pytest

from dfsweep import schema


def _scores(**overrides):
    cols = dict(trial_id=["t"], variant=["v1"], augmentation=["none"], seed=[1], dataset=["d"], domain=["source"],
                split=["test"], sample_id=["a"], label=[1], perturbation=["none"], level=[0], score=[0.9])
    cols.update(overrides)
    return pa.table(cols)


def test_validate_casts_to_the_schema_and_keeps_extra_columns():
    t = schema.validate_table(_scores(extra=["x"]), schema.SCORES, "scores")
    assert t.schema.field("label").type == pa.int8() and t.schema.field("score").type == pa.float32()
    assert t.column_names[: len(schema.SCORES)] == schema.SCORES.names and "extra" in t.column_names


def test_missing_column_is_named():
    with pytest.raises(schema.SchemaError, match=r"missing column\(s\) \['score'\]"):
        schema.validate_table(_scores().drop_columns(["score"]), schema.SCORES, "scores")


def test_uncastable_type_is_named():
    with pytest.raises(schema.SchemaError, match="column 'score'"):
        schema.validate_table(_scores(score=["high"]), schema.SCORES, "scores")


def test_nulls_are_refused():
    with pytest.raises(schema.SchemaError, match="null"):
        schema.validate_table(_scores(sample_id=[None]), schema.SCORES, "scores")


def test_optional_columns_are_filled_with_their_default():
    t = schema.validate_table(_scores(), schema.SCORES, "scores")  # written without video_id and role
    assert t.column("video_id").to_pylist() == [""] and t.column("role").to_pylist() == [""]
    assert schema.scores_schema(video=False).names == [n for n in schema.SCORES.names if n not in ("video_id", "role", "arm")]
    assert schema.role_of("v1", "") == "baseline" and schema.role_of("cue", "") == "diagnostic"
    assert schema.role_of("v2", "") == "candidate" and schema.role_of("v1", "candidate") == "candidate"
