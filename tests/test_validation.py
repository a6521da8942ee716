import numpy as np
import pyarrow as pa
import pytest

from autoenc.schema import infer_spec
from autoenc.validation import (
    conform_batch,
    rejected_schema,
    rejected_table,
    validate_batch,
    validation_mask,
)

NAN, INF = float("nan"), float("inf")


def make_batch():
    return pa.record_batch(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "x": pa.array([1.0, None, NAN, INF, -INF, 2.0]),
            "n": pa.array([1, 2, None, 4, 5, 6], pa.int64()),
        }
    )


def test_rows_with_null_nan_inf_are_rejected_with_column_and_problem():
    batch = make_batch()
    spec = infer_spec(batch.schema, key_columns=["id"], source="t")
    checked = validate_batch(batch, spec)
    assert checked.valid.tolist() == [True, False, False, False, False, True]
    assert checked.reasons == [
        "column 'x' is null",
        "column 'x' is NaN; column 'n' is null",
        "column 'x' is +inf",
        "column 'x' is -inf",
    ]
    np.testing.assert_array_equal(checked.features, [[1.0, 1.0], [2.0, 6.0]])


def test_prior_reasons_reject_rows_too():
    batch = pa.record_batch({"x": [1.0, 2.0]})
    spec = infer_spec(batch.schema, source="t")
    checked = validate_batch(batch, spec, prior_reasons=[None, "record is broken"])
    assert checked.valid.tolist() == [True, False]
    assert checked.reasons == ["record is broken"]


def test_conform_casts_widths_and_rejects_missing_features():
    reference = pa.schema([("id", pa.string()), ("x", pa.float64()), ("y", pa.float64())])
    spec = infer_spec(reference, key_columns=["id"], source="first")
    batch = pa.record_batch({"id": ["a"], "x": pa.array([1.5], pa.float32())})
    conformed = conform_batch(batch, reference, spec, source="second.parquet")
    assert conformed.batch.schema == reference
    assert conformed.batch.column("x").to_pylist() == [1.5]
    assert conformed.reasons == ["column 'y' is missing from second.parquet"]


def test_conform_rejects_a_column_of_another_type():
    reference = pa.schema([("x", pa.float64())])
    spec = infer_spec(reference, source="first")
    batch = pa.record_batch({"x": ["1.0", "oops"]})
    conformed = conform_batch(batch, reference, spec, source="second.parquet")
    assert conformed.batch.column("x").null_count == 2
    assert "has type string in second.parquet, expected double" in conformed.reasons[0]


def test_rejected_table_keeps_values_and_locates_rows():
    batch = make_batch()
    spec = infer_spec(batch.schema, key_columns=["id"], source="t")
    checked = validate_batch(batch, spec)
    table = rejected_table(batch, checked.valid, checked.reasons, source="f.parquet", first_row=100)
    assert table.schema == rejected_schema(batch.schema)
    assert table.column("id").to_pylist() == ["b", "c", "d", "e"]
    assert table.column("source_row").to_pylist() == [101, 102, 103, 104]
    assert table.column("source_file").to_pylist() == ["f.parquet"] * 4
    x = table.column("x").to_pylist()
    assert x[0] is None and np.isnan(x[1]) and x[2] == INF and x[3] == -INF


def test_split_is_deterministic_and_close_to_the_fraction():
    rows = np.arange(20_000)
    a = validation_mask("f.parquet", rows, seed=3, fraction=0.2)
    b = validation_mask("f.parquet", rows, seed=3, fraction=0.2)
    np.testing.assert_array_equal(a, b)
    assert 0.18 < a.mean() < 0.22
    # Same rows in two pieces give the same split: independent of bundling.
    pieces = np.concatenate(
        [
            validation_mask("f.parquet", rows[:777], seed=3, fraction=0.2),
            validation_mask("f.parquet", rows[777:], seed=3, fraction=0.2),
        ]
    )
    np.testing.assert_array_equal(a, pieces)
    assert (validation_mask("f.parquet", rows, seed=4, fraction=0.2) != a).any()
    assert (validation_mask("g.parquet", rows, seed=3, fraction=0.2) != a).any()


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_split_fraction_extremes(fraction):
    mask = validation_mask("f", np.arange(10_000), seed=0, fraction=fraction)
    assert abs(mask.mean() - fraction) < 0.03
