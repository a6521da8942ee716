"""``autoenc.Autoencoder``: the scikit-learn / PyOD-style estimator, fitted in
memory through the command line's training code."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from autoenc import Autoencoder
from autoenc.artifact import load_artifact
from autoenc.datasets import FEATURES, article_table, planted_anomalies
from autoenc_beam import score, train

TINY = dict(latent_dim=1, hidden_units=(32, 32), epochs=10, patience=5, batch_size=64, n_init=1, seed=3)
CLI_TINY = [
    "--latent_dim=1",
    "--hidden_units=32,32",
    "--epochs=10",
    "--patience=5",
    "--batch_size=64",
    "--n_init=1",
    "--seed=3",
]


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return article_table(3000, seed=0)


@pytest.fixture(scope="module")
def fitted(table) -> Autoencoder:
    return Autoencoder(**TINY).fit(table.select(list(FEATURES)), keys=table["id"])


@pytest.mark.pipeline
def test_fit_in_python_gives_the_command_lines_model_bit_for_bit(table, fitted, tmp_path):
    pq.write_table(table, tmp_path / "rows.parquet")
    cli = train.run(
        [
            f"--input={tmp_path / 'rows.parquet'}",
            f"--model_dir={tmp_path / 'cli'}",
            "--key_columns=id",
            f"--features={','.join(FEATURES)}",
            "--split_by=key",
            *CLI_TINY,
        ]
    )
    for got, want in zip(fitted.model_.get_weights(), cli.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fitted.metadata_.normalization.scale, cli.metadata.normalization.scale)
    assert fitted.threshold_ == cli.metadata.threshold
    assert fitted.metadata_.history["val_loss"] == cli.metadata.history["val_loss"]
    fingerprint = cli.metadata.input["determinism"]["staged_rows_fingerprint"]
    assert fitted.metadata_.input["determinism"]["staged_rows_fingerprint"] == fingerprint


@pytest.mark.pipeline
def test_saved_models_are_the_command_lines_artifact_both_ways(table, fitted, tmp_path):
    new = pa.concat_tables([article_table(200, seed=5, id_prefix="new"), planted_anomalies(20)])
    pq.write_table(new, tmp_path / "new.parquet")
    # Saved from Python, scored by the command line.
    path = fitted.save(str(tmp_path / "m"))
    assert load_artifact(str(tmp_path / "m")).path == path
    summary = score.run(
        [
            f"--input={tmp_path / 'new.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            f"--output={tmp_path / 'out'}",
            "--passthrough",
        ]
    )
    scores = pq.read_table(tmp_path / "out" / "scores").sort_by("id")
    ordered = new.sort_by("id")
    np.testing.assert_allclose(
        fitted.decision_function(ordered.select(list(FEATURES))),
        scores["reconstruction_error"].to_numpy(),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        fitted.predict(ordered.select(list(FEATURES))), scores["is_anomaly"].to_numpy()
    )
    np.testing.assert_allclose(
        fitted.predict_proba(ordered.select(list(FEATURES)))[:, 1],
        scores["anomaly_score"].to_numpy(),
        rtol=1e-6,
    )
    assert summary["counts"]["scored"] == 220
    # Loaded in Python from the directory the command line wrote.
    loaded = Autoencoder.load(str(tmp_path / "m"))
    assert loaded.get_params() == {**fitted.get_params()}
    np.testing.assert_array_equal(
        loaded.transform(new.select(list(FEATURES))), fitted.transform(new.select(list(FEATURES)))
    )


def test_pyod_and_scikit_learn_conventions(table, fitted):
    x = table.select(list(FEATURES)).to_pandas().to_numpy()
    # PyOD: scores of the rows fitted on, the threshold, 0/1 labels, probabilities.
    assert fitted.decision_scores_.shape == (3000,) and fitted.labels_.shape == (3000,)
    np.testing.assert_array_equal(fitted.labels_, (fitted.decision_scores_ > fitted.threshold_).astype(int))
    assert 0.002 < fitted.labels_.mean() < 0.05  # about contamination=0.01 of held-out rows
    proba = fitted.predict_proba(x[:50])
    assert proba.shape == (50, 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(fitted.score_samples(x[:5]), -fitted.decision_function(x[:5]))
    # numpy, pandas and Arrow give the same numbers (numpy columns are x0..x3).
    by_numpy = fitted.decision_function(table.select(list(FEATURES)).to_pandas())
    np.testing.assert_array_equal(by_numpy, fitted.decision_scores_)
    anomalies = planted_anomalies(40).select(list(FEATURES))
    assert np.median(fitted.decision_function(anomalies)) > 5 * np.median(fitted.decision_scores_)
    # scikit-learn: parameters, clone, transform in a Pipeline.
    assert clone(fitted).get_params() == fitted.get_params() and not hasattr(clone(fitted), "model_")
    assert Autoencoder(**TINY).set_params(latent_dim=2).latent_dim == 2
    assert fitted.transform(x[:7]).shape == (7, 1)


def test_a_pipeline_of_autoencoder_and_a_classifier_fits_on_numpy():
    rng = np.random.default_rng(1)
    z = rng.uniform(-1, 1, 800)
    x = np.column_stack([z, z**2, np.sin(3 * z)]) + 0.01 * rng.normal(size=(800, 3))
    y = (z > 0).astype(int)
    pipe = Pipeline(
        [
            ("reduce", Autoencoder(latent_dim=1, hidden_units=(16,), epochs=30, n_init=1)),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.fit(x, y)
    assert pipe.score(x, y) > 0.9  # the 1-wide latent keeps z's order: a line separates z > 0


def test_bad_rows_and_bad_shapes_raise_value_errors(fitted):
    x = np.ones((10, 4))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3: column 'x1' is NaN"):
        Autoencoder(**TINY).fit(x)
    with pytest.raises(ValueError, match="Reshape your data"):
        fitted.predict(np.ones(4))
    with pytest.raises(ValueError, match="X has 3 features, but Autoencoder is expecting 4 features"):
        fitted.predict(np.ones((2, 3)))
    with pytest.raises(Exception, match="not fitted"):
        Autoencoder().predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="Found 1 sample"):
        Autoencoder(**TINY).fit(np.ones((1, 4)))
    with pytest.raises(TypeError, match="Sparse data was passed for X"):
        from scipy import sparse

        Autoencoder(**TINY).fit(sparse.random(20, 4, density=0.5, format="csr"))


def test_images_fit_with_the_conv_kind():
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 0.2, (300, 12, 12, 1))
    images[:, 3:9, 5:7, 0] += 0.7  # a bar in every image
    ae = Autoencoder("conv", latent_dim=4, epochs=3, n_init=1).fit(images)
    assert ae.metadata_.spec.features[0].shape == (12, 12, 1)
    odd = images[:20].copy()
    odd[:, :, :, 0] = np.flip(odd[:, :, :, 0], axis=1).transpose(0, 2, 1)  # the bar turned
    assert ae.transform(images[:5]).shape == (5, 4)
    assert np.median(ae.decision_function(odd)) > np.median(ae.decision_scores_)


def test_scikit_learn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    # Every check applies and passes. The pca kind keeps this under a minute
    # (each check fits afresh); the dense kind passes the same checks in about
    # seven minutes (docs/python.md).
    estimator = Autoencoder("pca", latent_dim=1, epochs=1, n_init=1, patience=1)
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert not failed
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}  # needs SCIPY_ARRAY_API set before scipy loads
    assert sum(r["status"] == "passed" for r in results) > 40


def test_a_fitted_autoencoder_pickles_and_scores_the_same(fitted):
    import pickle

    x = planted_anomalies(10).select(list(FEATURES))
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.decision_function(x), fitted.decision_function(x))
    assert again.threshold_ == fitted.threshold_
