"""``--missing impute``: missing values take the training median, the model gets
missing indicators, and every scored row says how many of its values were
imputed; ``reject`` (the default) still rejects such rows."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autoenc import Autoencoder
from autoenc.datasets import FEATURES, article_table
from autoenc.preprocessing import Imputation
from autoenc.schema import FeatureSpec, infer_spec
from autoenc.validation import validate_batch
from autoenc_beam import AutoencoderModelHandler, score, train

TRAIN_ARGS = [
    "--key_columns=id",
    f"--features={','.join(FEATURES)}",
    "--latent_dim=1",
    "--hidden_units=32,32",
    "--epochs=30",
    "--patience=5",
    "--batch_size=64",
    "--n_init=1",
]


def _with_gaps(table: pa.Table, gaps: dict[str, list[int]], *, value=None) -> pa.Table:
    """``table`` with the listed rows of each column set to ``value`` (None: null)."""
    for name, rows in gaps.items():
        values = table[name].to_pylist()
        for i in rows:
            values[i] = value
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.float64()))
    return table


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.one_of(st.floats(-1e300, 1e300), st.just(np.nan)),
    )
)
def test_imputation_fills_every_gap_with_the_median_and_marks_it(x):
    names = [f"c{j}" for j in range(x.shape[1])]
    if np.isnan(x).all(axis=0).any():
        with pytest.raises(ValueError, match="no value in the"):
            Imputation.from_sample(x, names)
        return
    imputation = Imputation.from_sample(x, names)
    filled, counts = imputation.apply(x)
    missing = np.isnan(x)
    assert not np.isnan(filled).any()
    assert filled.shape == (len(x), x.shape[1] + missing.any(axis=0).sum())
    np.testing.assert_array_equal(filled[:, : x.shape[1]][~missing], x[~missing])
    np.testing.assert_array_equal(
        filled[:, : x.shape[1]][missing], np.broadcast_to(imputation.median, x.shape)[missing]
    )
    np.testing.assert_array_equal(filled[:, x.shape[1] :], missing[:, list(imputation.indicators)])
    np.testing.assert_array_equal(counts, missing.sum(axis=1))
    assert Imputation.from_dict(imputation.to_dict(), names) == imputation


def test_validation_imputes_null_and_nan_and_still_rejects_infinities_and_null_keys():
    batch = pa.record_batch(
        {
            "id": ["a", "b", "c", None, "e"],
            "x": [1.0, None, float("nan"), 4.0, float("inf")],
            "y": [1, 2, None, 4, 5],
        }
    )
    spec = infer_spec(batch.schema, key_columns=["id"], source="t")
    rejected = validate_batch(batch, spec)
    assert rejected.valid.tolist() == [True, False, False, False, False]
    assert rejected.imputed is None
    imputation = Imputation(names=("x", "y"), median=np.array([2.0, 3.0]), indicators=(0,), sample_rows=5)
    imputing = FeatureSpec(spec.features, spec.key_columns, imputation=imputation)
    checked = validate_batch(batch, imputing)
    assert checked.valid.tolist() == [True, True, True, False, False]
    assert checked.reasons == ["key column 'id' is null", "column 'x' is +inf"]
    # x, y, then x's indicator; y has no indicator but is imputed all the same.
    np.testing.assert_array_equal(checked.features, [[1, 1, 0], [2, 2, 1], [2, 3, 1]])
    assert checked.imputed.tolist() == [0, 1, 2]
    assert checked.missing == {"x": 2, "y": 1}


def test_the_imputation_is_kept_in_metadata_and_a_damaged_one_is_named(tmp_path):
    spec = infer_spec(pa.schema({"x": pa.float64(), "y": pa.float64()}), source="t")
    imputing = FeatureSpec(
        spec.features,
        imputation=Imputation(names=("x", "y"), median=np.array([0.5, 2.0]), indicators=(1,), sample_rows=9),
    )
    assert FeatureSpec.from_dict(json.loads(json.dumps(imputing.to_dict()))) == imputing
    assert imputing.model_names == ("x", "y", "y (missing)") and imputing.model_width == 3
    assert FeatureSpec.from_dict(spec.to_dict()).imputation is None
    damaged = imputing.to_dict()
    damaged["missing"]["median"] = {"x": 0.5}
    with pytest.raises(ValueError, match="one number for each feature"):
        FeatureSpec.from_dict(damaged)
    with pytest.raises(ValueError, match="'reject' or 'impute'"):
        FeatureSpec.from_dict({**spec.to_dict(), "missing": {"policy": "mean"}})


@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    """Training rows with x1 null in every 10th row, x2 NaN in every 20th,
    one +inf and one null key; a model trained on them with --missing impute."""
    root = tmp_path_factory.mktemp("missing")
    table = article_table(2000, seed=0)
    table = _with_gaps(table, {"x1": list(range(0, 2000, 10))})
    table = _with_gaps(table, {"x2": list(range(5, 2000, 20))}, value=float("nan"))
    table = _with_gaps(table, {"x3": [7]}, value=float("inf"))
    ids = table["id"].to_pylist()
    ids[11] = None
    table = table.set_column(0, "id", pa.array(ids, pa.string()))
    pq.write_table(table, root / "train.parquet", row_group_size=500)
    artifact = train.run(
        [
            f"--input={root / 'train.parquet'}",
            f"--model_dir={root / 'model'}",
            "--missing=impute",
            *TRAIN_ARGS,
        ]
    )
    return root, table, artifact


@pytest.mark.pipeline
def test_training_with_impute_keeps_the_rows_and_learns_indicators(gappy):
    root, table, artifact = gappy
    meta = artifact.metadata
    imputation = meta.spec.imputation
    assert imputation.indicator_columns == ("x1", "x2")
    assert meta.spec.model_names == (*FEATURES, "x1 (missing)", "x2 (missing)")
    # The medians are those of the launch sample: close to the data's own.
    for j, name in enumerate(FEATURES):
        values = table[name].to_numpy(zero_copy_only=False)
        values = values[np.isfinite(values)]
        spread = np.subtract(*np.percentile(values, [75, 25]))
        assert abs(imputation.median[j] - np.median(values)) < 0.1 * spread, name
    # Only the +inf row and the null key are rejected (neither has a gap); the
    # 200 null x1 and 100 NaN x2 (never in the same row) are imputed.
    assert meta.rows["read"] == 2000 and meta.rows["rejected"] == 2
    assert (meta.rows["imputed_rows"], meta.rows["imputed_values"]) == (300, 300)
    rejected = pq.read_table(os.path.join(artifact.path, "rejected")).to_pylist()
    assert sorted(r["reason"] for r in rejected) == ["column 'x3' is +inf", "key column 'id' is null"]
    # reject (the default) on the same file: every row with a gap is rejected, with its reason.
    rejecting = train.run(
        [f"--input={root / 'train.parquet'}", f"--model_dir={root / 'reject'}", *TRAIN_ARGS]
    )
    assert rejecting.metadata.spec.imputation is None
    assert rejecting.metadata.rows["rejected"] == 2 + 300
    reasons = [r["reason"] for r in pq.read_table(os.path.join(rejecting.path, "rejected")).to_pylist()]
    assert sum("column 'x1' is null" in r for r in reasons) == 200
    assert sum("column 'x2' is NaN" in r for r in reasons) == 100


@pytest.mark.pipeline
def test_scoring_imputes_counts_and_warns_about_columns_without_an_indicator(gappy, tmp_path, capsys):
    root, _, artifact = gappy
    rows = article_table(300, seed=1, id_prefix="new")
    rows = _with_gaps(rows, {"x1": list(range(10)), "x3": list(range(10, 15))})
    rows = _with_gaps(rows, {"x4": [20]}, value=float("-inf"))
    pq.write_table(rows, tmp_path / "rows.parquet")
    capsys.readouterr()
    summary = score.run(
        [
            f"--input={tmp_path / 'rows.parquet'}",
            f"--model_dir={root / 'model'}",
            f"--output={tmp_path / 'out'}",
        ]
    )
    err = capsys.readouterr().err
    counts = summary["counts"]
    assert (counts["read"], counts["scored"], counts["rejected"]) == (300, 299, 1)
    assert summary["imputed"] == {
        "rows": 15,
        "values": 15,
        "by_column": {"x1": 10, "x3": 5},
        "without_indicator": ["x3"],
    }
    assert "15 of the scored rows had missing values imputed" in err
    assert "'x3' (5 rows)" in err and "can score as normal" in err
    scores = pq.read_table(tmp_path / "out" / "scores").to_pandas().set_index("id")
    imputed = scores["imputed_values"]
    assert imputed[[f"new-{i:06d}" for i in range(15)]].tolist() == [1] * 15
    assert imputed.drop([f"new-{i:06d}" for i in range(15)]).eq(0).all()
    assert np.isfinite(scores["reconstruction_error"]).all()
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    assert [r["reason"] for r in rejected] == ["column 'x4' is -inf"]
    # The indicator gives a missing x1 its own share of the error.
    top = scores.loc[[f"new-{i:06d}" for i in range(10)], "top_features"]
    assert any(item["feature"] == "x1 (missing)" for row in top for item in row)


@pytest.mark.pipeline
def test_the_estimator_the_handler_and_the_savedmodel_impute_as_autoenc_score(tmp_path):
    import tensorflow as tf

    from autoenc.export import export_saved_model

    table = _with_gaps(article_table(1500, seed=2), {"x2": list(range(3, 1500, 8))})
    x = table.select(FEATURES)
    with pytest.raises(ValueError, match="missing='impute'"):
        Autoencoder(epochs=2, n_init=1).fit(x)
    fitted = Autoencoder(latent_dim=1, hidden_units=(16,), epochs=15, n_init=1, missing="impute").fit(x)
    assert fitted.metadata_.spec.imputation.indicator_columns == ("x2",)
    assert fitted.__sklearn_tags__().input_tags.allow_nan
    model_dir = str(tmp_path / "model")
    fitted.save(model_dir)
    probe = _with_gaps(article_table(40, seed=3, id_prefix="p"), {"x2": [0, 1, 2], "x4": [3]})
    pq.write_table(probe, tmp_path / "probe.parquet")
    score.run(
        [
            f"--input={tmp_path / 'probe.parquet'}",
            f"--model_dir={model_dir}",
            f"--output={tmp_path / 'out'}",
            "--passthrough",
        ]
    )
    cli = pq.read_table(tmp_path / "out" / "scores").to_pandas().set_index("id").loc[probe["id"].to_pylist()]
    probe_x = np.column_stack([probe[n].to_numpy(zero_copy_only=False) for n in FEATURES]).astype(float)
    # As close as the float32 model's output for another number of rows a call.
    np.testing.assert_allclose(
        fitted.decision_function(probe.select(FEATURES)), cli["reconstruction_error"], rtol=1e-4, atol=1e-6
    )
    assert cli["imputed_values"].tolist()[:5] == [1, 1, 1, 1, 0]
    # SavedModel: NaN is a missing value.
    module = tf.saved_model.load(export_saved_model(model_dir, str(tmp_path / "serving")))
    out = module.signatures["score_rows"](rows=tf.constant(probe_x))
    np.testing.assert_allclose(
        out["reconstruction_error"].numpy(), cli["reconstruction_error"], rtol=1e-4, atol=1e-6
    )
    assert out["imputed_values"].numpy().tolist() == cli["imputed_values"].tolist()
    # RunInference: a numpy row with NaN is scored; an infinite one is an error.
    with beam.Pipeline() as p:
        results = (
            p | beam.Create([probe_x[0], probe_x[10]]) | RunInference(AutoencoderModelHandler(model_dir))
        )
        assert_that(results | beam.Map(lambda r: r.inference.imputed_values), equal_to([1, 0]))
    with pytest.raises(ValueError, match=r"column 'x3' is \+inf"):
        fitted.decision_function(_with_gaps(probe.select(FEATURES), {"x3": [0]}, value=float("inf")))
