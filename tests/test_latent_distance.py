"""latent_distance: the Mahalanobis distance of a row's latent vector from the
normal rows' latents, beside the reconstruction error."""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from autoenc.artifact import load_artifact
from autoenc.errors import ConfigError
from autoenc.scoring import LatentDistribution, latent_moments
from autoenc_beam import score, train


def test_moments_summed_over_batches_give_the_mahalanobis_distance(rng):
    z = rng.normal(size=(3000, 3)) @ np.array([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.3, 3.0]])
    parts = [latent_moments(part) for part in np.array_split(z, 4)]
    summed = tuple(sum(p[i] for p in parts) for i in range(3))
    distribution = LatentDistribution.from_moments(*summed)
    assert distribution.rows == 3000
    q = rng.normal(size=(20, 3))
    d = q - z.mean(axis=0)
    expected = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(z, rowvar=False)), d))
    np.testing.assert_allclose(distribution.distance(q), expected, rtol=1e-8)


def test_a_direction_the_rows_do_not_vary_in_counts_for_nothing(rng):
    z = np.column_stack([rng.normal(size=500), np.full(500, 2.0)])  # a dead latent unit
    distribution = LatentDistribution.from_moments(*latent_moments(z))
    d = distribution.distance(np.array([[1.0, 2.0], [1.0, 50.0]]))
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d, abs(1.0 - z[:, 0].mean()) / z[:, 0].std(ddof=1), rtol=1e-6)
    with pytest.raises(ConfigError, match="at least 2 rows"):
        LatentDistribution.from_moments(*latent_moments(z[:1]))


def plane_rows(rng, n, *, scale=1.0, off=0.0):
    """Rows of 8 features near a 2-D plane: ``scale`` stretches them along it,
    ``off`` pushes them off it."""
    basis = np.linalg.qr(np.random.default_rng(7).normal(size=(8, 8)))[0]
    z = rng.normal(size=(n, 2)) * scale
    x = z @ basis[:, :2].T + rng.normal(size=(n, 8)) * 0.05 + off * rng.choice([-1, 1], (n, 1)) * basis[:, 2]
    return x


def table(x, prefix):
    columns = {"id": [f"{prefix}-{i}" for i in range(len(x))]}
    columns.update({f"f{j}": x[:, j] for j in range(x.shape[1])})
    return pa.table(columns)


def train_and_score(tmp_path, name, kind, *extra):
    """Trains a 2-wide ``kind`` model on ``train.parquet`` and scores
    ``test.parquet`` with it: (the artifact, the scores table)."""
    model_dir, out = tmp_path / f"model-{name}", tmp_path / f"out-{name}"
    dense = ["--hidden_units=32", "--epochs=60", "--n_init=1"] if kind == "dense" else []
    train.run(
        [
            f"--input={tmp_path / 'train.parquet'}",
            f"--model_dir={model_dir}",
            "--key_columns=id",
            f"--model={kind}",
            "--latent_dim=2",
            *dense,
            *extra,
        ],
        save_main_session=False,
    )
    score.run(
        [f"--input={tmp_path / 'test.parquet'}", f"--model_dir={model_dir}", f"--output={out}"],
        save_main_session=False,
    )
    return load_artifact(str(model_dir)), pq.read_table(str(out / "scores"))


@pytest.mark.parametrize("kind", ["pca", "dense"])
def test_latent_distance_finds_extreme_rows_that_reconstruct_well(tmp_path, rng, kind):
    pq.write_table(table(plane_rows(rng, 3000), "train"), tmp_path / "train.parquet")
    test = pa.concat_tables(
        [
            table(plane_rows(rng, 400), "normal"),
            table(plane_rows(rng, 100, scale=4.0), "far"),  # on the plane, far out along it
            table(plane_rows(rng, 100, off=2.0), "off"),  # near the centre, off the plane
        ]
    )
    pq.write_table(test, tmp_path / "test.parquet")
    artifact, scores = train_and_score(tmp_path, kind, kind)
    meta = artifact.metadata
    # Every normal row was in the estimate (fewer than LATENT_TRAIN_ROWS).
    assert meta.latent_distribution.rows == meta.rows["used"] == 3000
    kind_of = np.array([i.split("-")[0] for i in scores["id"].to_pylist()])
    distance = scores["latent_distance"].to_numpy()
    error = scores["reconstruction_error"].to_numpy()
    normal = kind_of == "normal"

    def auc(values, which):
        keep = normal | (kind_of == which)
        return roc_auc_score(kind_of[keep] == which, values[keep])

    # Rows far out along the plane reconstruct about as well as normal rows; the
    # latent distance finds them. Rows off it are the reconstruction error's.
    assert auc(distance, "far") > 0.9 > 0.8 > auc(error, "far")
    assert auc(error, "off") > 0.95
    # Normal rows: distances of a 2-D standard normal (median sqrt(2 ln 2) = 1.18).
    assert 0.9 < np.median(distance[normal]) < 1.5
    # combined_score: the larger of the two percentiles, so it finds both kinds.
    combined = scores["combined_score"].to_numpy()
    anomaly = scores["anomaly_score"].to_numpy()
    assert (combined >= anomaly).all() and ((combined >= 0) & (combined <= 1)).all()
    assert auc(combined, "far") > 0.9 and auc(combined, "off") > 0.95
    quantiles = meta.latent_distribution.distance_quantiles
    assert len(quantiles) == 101 and (np.diff(quantiles) >= 0).all()
    # The validation rows' median distance is their 50th percentile.
    assert 0.9 < quantiles[50] < 1.5
    # total_distance: both parts in one distance, so it ranks both kinds
    # without a percentile's ceiling; a normal row scores about sqrt(8 values).
    # (A fifth of the "far" rows lie within the normal rows' latent range, and
    # the residual's spread blurs the rest a little: below the distance's AUC.)
    total = scores["total_distance"].to_numpy()
    assert auc(total, "far") > 0.85 and auc(total, "off") > 0.95
    assert 2.0 < np.median(total[normal]) < 4.0
    assert (total >= distance).all()
    assert meta.latent_distribution.error_mean == pytest.approx(np.mean(error[normal]), rel=0.5)


def test_combined_score_of_an_extreme_row_is_1_and_old_artifacts_have_none(rng):
    from autoenc.models import build_dense
    from autoenc.preprocessing import Normalizer
    from autoenc.scoring import Scorer

    model = build_dense(3, latent_dim=1, hidden_units=(4,))
    distribution = LatentDistribution.from_moments(*latent_moments(rng.normal(size=(500, 1))))
    normal = Normalizer(np.zeros(3), np.ones(3))
    quantiles = np.linspace(0, 1, 101)
    with_q = Scorer(
        model,
        normal,
        1.0,
        quantiles,
        latent_distribution=distribution.with_quantiles(rng.normal(size=(500, 1))),
    )
    scores = with_q.score(np.array([[0.0, 0.0, 0.0], [1e300, 0.0, 0.0], [np.inf, 0.0, 0.0]]))
    assert scores.combined_score[1:].tolist() == [1.0, 1.0] and scores.extreme[1:].all()
    assert scores.total_distance is None  # a distribution without error_mean (an older artifact)
    without = Scorer(model, normal, 1.0, quantiles, latent_distribution=distribution)
    assert without.score(np.zeros((2, 3))).combined_score is None
    with_mean = Scorer(
        model, normal, 1.0, quantiles, latent_distribution=replace(distribution, error_mean=0.1)
    )
    total = with_mean.score(np.array([[0.0, 0.0, 0.0], [1e300, 0.0, 0.0], [np.nan, 0.0, 0.0]])).total_distance
    assert np.isfinite(total[0]) and total[1:].tolist() == [np.inf, np.inf]


def test_an_artifact_keeps_the_error_mean_and_refuses_a_bad_one(tmp_path, rng):
    import json

    pq.write_table(table(plane_rows(rng, 600), "train"), tmp_path / "train.parquet")
    pq.write_table(table(plane_rows(rng, 50), "test"), tmp_path / "test.parquet")
    artifact, scores = train_and_score(tmp_path, "pca", "pca")
    assert artifact.metadata.latent_distribution.error_mean > 0
    assert "total_distance" in scores.column_names
    [metadata] = list((tmp_path / "model-pca").glob("*/metadata.json"))
    d = json.loads(metadata.read_text())
    d["latent_distribution"]["error_mean"] = -1.0
    metadata.write_text(json.dumps(d))
    with pytest.raises(Exception, match="latent_distribution.error_mean"):
        load_artifact(str(tmp_path / "model-pca"))


def test_minmax_normalization_keeps_an_error_for_rows_beyond_the_training_range(tmp_path, rng):
    """A sigmoid output cannot leave the range the training rows span: rows far
    out along the normal rows' plane keep a reconstruction error, where a linear
    output extrapolates to them (the test above)."""
    x_train, x_normal, x_far = plane_rows(rng, 3000), plane_rows(rng, 400), plane_rows(rng, 100, scale=4.0)
    pq.write_table(table(x_train, "train"), tmp_path / "train.parquet")
    pq.write_table(
        pa.concat_tables([table(x_normal, "normal"), table(x_far, "far")]), tmp_path / "test.parquet"
    )
    # Far rows past the training range by a tenth of it in some feature.
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    margin = 0.1 * (high - low)
    beyond = ((x_far < low - margin) | (x_far > high + margin)).any(axis=1)
    assert 30 < beyond.sum() < 100  # the data leaves both kinds of far row
    auc = {}
    for normalization in ("zscore", "minmax"):
        artifact, scores = train_and_score(
            tmp_path, normalization, "dense", f"--normalization={normalization}"
        )
        assert artifact.metadata.normalization.method == normalization
        assert artifact.metadata.hyperparameters["normalization"] == normalization
        output = artifact.model.get_layer("reconstruction")
        assert output.activation.__name__ == ("sigmoid" if normalization == "minmax" else "linear")
        error = dict(zip(scores["id"].to_pylist(), scores["reconstruction_error"].to_numpy(), strict=True))
        normal = [error[f"normal-{i}"] for i in range(len(x_normal))]
        far = np.array([error[f"far-{i}"] for i in range(len(x_far))])
        auc[normalization] = {
            "beyond": roc_auc_score([0] * len(normal) + [1] * beyond.sum(), normal + list(far[beyond])),
            "all far": roc_auc_score([0] * len(normal) + [1] * len(far), normal + list(far)),
        }
    assert auc["minmax"]["beyond"] > 0.97 > 0.85 > auc["zscore"]["beyond"], auc
    assert auc["minmax"]["all far"] > auc["zscore"]["all far"] + 0.1, auc
