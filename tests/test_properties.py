"""Property-based tests: on random Arrow tables (numeric types of every width,
decimals, nulls, NaN, infinities, values near the float limits, int64 beyond
2**53, constant columns, any number of rows), every row is scored with no NaN
in any score, or rejected with a reason that names its column, and the counts
reconcile: in the library, and through the scoring pipeline end to end."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenc.artifact import load_artifact
from autoenc.schema import unify_schemas
from autoenc.validation import conform_batch, rejected_table, validate_batch

FEATURES = ("x1", "x2", "x3", "x4")
NAMED = re.compile(r"column '(x1|x2|x3|x4|id)'")

EXTREMES = [0.0, -0.0, 1e-320, 1.0, -1.0, 1e30, 1e39, -1e39, 3.4e38, 1e300, -1e300, 1.7976931348623157e308]
FLOATS = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from(EXTREMES),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.none(),
)
INTS = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([2**53 + 1, 2**62, -(2**63), 2**63 - 1, 1_790_000_000_000_000_000]),
    st.none(),
)


@st.composite
def feature_column(draw, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["float64", "float32", "int64", "int32", "uint8", "decimal", "constant"]))
    if kind in ("float64", "float32"):
        values = draw(st.lists(FLOATS, min_size=n, max_size=n))
        if kind == "float32":
            # Values beyond float32 would not be float32 data; as written by a tool they are +-inf.
            values = [
                None if v is None else float(np.float32(v)) if abs(v) < 3.4e38 else np.sign(v) * np.inf
                for v in values
            ]
            return pa.array(values, pa.float32())
        return pa.array(values, pa.float64())
    if kind == "int64":
        return pa.array(draw(st.lists(INTS, min_size=n, max_size=n)), pa.int64())
    if kind == "int32":
        return pa.array(
            draw(st.lists(st.one_of(st.integers(-(2**31), 2**31 - 1), st.none()), min_size=n, max_size=n)),
            pa.int32(),
        )
    if kind == "uint8":
        return pa.array(draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)), pa.uint8())
    if kind == "decimal":
        values = draw(
            st.lists(
                st.one_of(st.decimals(-(10**6), 10**6, places=2, allow_nan=False), st.none()),
                min_size=n,
                max_size=n,
            )
        )
        return pa.array(values, pa.decimal128(12, 2))
    value = draw(st.sampled_from([0.1, 0.0, 1e300, -5.0]))
    return pa.array([value] * n, pa.float64())


@st.composite
def tables(draw, max_rows: int = 40) -> pa.Table:
    n = draw(st.integers(0, max_rows))
    columns = {
        "id": pa.array(
            draw(st.lists(st.one_of(st.text(max_size=3), st.none()), min_size=n, max_size=n)), pa.string()
        )
    }
    for name in draw(st.permutations(FEATURES)):
        columns[name] = draw(feature_column(n))
    if draw(st.booleans()):
        columns["note"] = pa.array(
            draw(st.lists(st.one_of(st.text(max_size=4), st.none()), min_size=n, max_size=n))
        )
    return pa.table(columns)


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    artifact = load_artifact(tiny_model_dir)
    return artifact.metadata.spec, artifact.scorer(top_k=2, error_map=True)


def check_scores(scores, n_valid: int) -> None:
    for name in ("reconstruction_error", "anomaly_score", "latent_distance", "top_shares", "error_map"):
        values = getattr(scores, name)
        assert values is not None and len(values) == n_valid
        assert not np.isnan(values).any(), name
    assert (scores.reconstruction_error >= 0).all()
    assert ((scores.anomaly_score >= 0) & (scores.anomaly_score <= 1)).all()
    # A row the model's arithmetic cannot hold is a certain anomaly.
    assert scores.is_anomaly[scores.extreme].all() and (scores.anomaly_score[scores.extreme] == 1).all()
    assert np.isposinf(scores.reconstruction_error[scores.extreme]).all()
    assert np.isfinite(scores.reconstruction_error[~scores.extreme]).all()
    assert np.isfinite(scores.latent[~scores.extreme]).all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables())
def test_every_row_is_scored_without_nan_or_rejected_with_its_column(scorer, table):
    spec, model_scorer = scorer
    batch = (
        table.combine_chunks().to_batches()[0]
        if table.num_rows
        else pa.RecordBatch.from_pylist([], schema=table.schema)
    )
    reference = unify_schemas([table.schema])
    conformed = conform_batch(batch, reference, spec, source="random.parquet")
    checked = validate_batch(conformed.batch, spec, prior_reasons=conformed.reasons)
    n_valid = int(checked.valid.sum())
    assert n_valid + len(checked.reasons) == table.num_rows
    assert all(NAMED.search(reason) for reason in checked.reasons), checked.reasons
    assert checked.features.shape == (n_valid, len(FEATURES))
    rejected = rejected_table(
        conformed.batch, checked.valid, checked.reasons, source="random.parquet", first_row=0
    )
    assert rejected.num_rows == len(checked.reasons)
    check_scores(model_scorer.score(checked.features), n_valid)


@pytest.mark.pipeline
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(table=tables(max_rows=60), row_group=st.integers(1, 25), files=st.integers(1, 3))
def test_the_scoring_pipeline_scores_or_rejects_every_row_of_random_tables(
    tiny_model_dir, tmp_path_factory, table, row_group, files
):
    from autoenc_beam import score

    directory = tmp_path_factory.mktemp("random")
    parts = np.array_split(np.arange(table.num_rows), files)
    for i, rows in enumerate(parts):
        pq.write_table(
            table.take(pa.array(rows, pa.int64())), directory / f"part-{i}.parquet", row_group_size=row_group
        )
    if table.num_rows == 0:
        with pytest.raises(Exception, match="hold no rows"):
            score.run(
                [
                    f"--input={directory}/*.parquet",
                    f"--model_dir={tiny_model_dir}",
                    f"--output={directory}/out",
                ]
            )
        return
    summary = score.run(
        [
            f"--input={directory}/*.parquet",
            f"--model_dir={tiny_model_dir}",
            f"--output={directory}/out",
            "--passthrough",
        ]
    )
    counts = summary["counts"]
    assert summary["reconciled"] and counts["read"] == table.num_rows == counts["scored"] + counts["rejected"]
    scores = pq.read_table(directory / "out" / "scores")
    rejected = pq.read_table(directory / "out" / "rejected")
    assert scores.num_rows == counts["scored"] and rejected.num_rows == counts["rejected"]
    for name in ("reconstruction_error", "anomaly_score", "latent_distance"):
        assert not np.isnan(scores[name].to_numpy(zero_copy_only=False).astype(float)).any()
    assert all(NAMED.search(reason) for reason in rejected["reason"].to_pylist())
    assert counts["extreme"] == int(np.isposinf(scores["reconstruction_error"].to_numpy()).sum())
