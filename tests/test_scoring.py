import numpy as np
import pytest

from autoenc.errors import ConfigError
from autoenc.models import build_dense, scoring_model
from autoenc.preprocessing import Normalizer
from autoenc.scoring import Scorer, reconstruction_error, threshold_from_contamination


def test_reconstruction_error_is_mean_squared_error_per_row():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    r = np.array([[0.0, 2.0], [1.0, 2.0]])
    np.testing.assert_allclose(reconstruction_error(x, r), [2.0, 0.0])


def test_threshold_is_the_upper_quantile(rng):
    errors = rng.exponential(size=10_000)
    t = threshold_from_contamination(errors, 0.05)
    assert abs((errors > t).mean() - 0.05) < 0.002
    assert threshold_from_contamination(errors, 0.0) == errors.max()


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_threshold_refuses_bad_contamination(bad):
    with pytest.raises(ConfigError, match="contamination"):
        threshold_from_contamination(np.ones(3), bad)


def test_scorer_flags_rows_above_threshold_and_matches_the_model(rng):
    model = build_dense(3, latent_dim=2, hidden_units=(8,))
    norm = Normalizer(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    raw = rng.normal(size=(20_000, 3)) * 2 + [1.0, 2.0, 3.0]
    errors = Scorer(model, norm, np.inf).score(raw).reconstruction_error
    threshold = float(np.median(errors))
    scores = Scorer(model, norm, threshold).score(raw)
    assert scores.latent.shape == (20_000, 2) and scores.latent.dtype == np.float32
    np.testing.assert_array_equal(scores.is_anomaly, scores.reconstruction_error > threshold)
    latent, recon = scoring_model(model).predict(norm.transform(raw[:5]), verbose=0)
    np.testing.assert_allclose(scores.latent[:5], latent, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        scores.reconstruction_error[:5], reconstruction_error(norm.transform(raw[:5]), recon), rtol=1e-5
    )


def test_scorer_handles_an_empty_batch():
    scorer = Scorer(build_dense(2, latent_dim=1, hidden_units=(4,)), Normalizer(np.zeros(2), np.ones(2)), 1.0)
    scores = scorer.score(np.empty((0, 2)))
    assert scores.latent.shape == (0, 1) and scores.reconstruction_error.shape == (0,)
