import numpy as np
import pytest

from autoenc import scoring
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


def test_best_f1_threshold_weighs_sampled_normal_rows():
    rng = np.random.default_rng(0)
    normal = rng.normal(0.0, 1.0, 200)
    anomalous = rng.normal(2.5, 1.0, 50)
    alone = scoring.threshold_best_f1(normal, anomalous)
    # The same normal rows standing for 10x as many: false positives cost more,
    # so the threshold moves up and flags fewer normal rows.
    weighted = scoring.threshold_best_f1(normal, anomalous, normal_weight=10.0)
    assert weighted > alone
    rates = scoring.flag_rates(normal, anomalous, weighted, normal_weight=10.0)
    assert rates["fpr"] < scoring.flag_rates(normal, anomalous, alone)["fpr"]
    assert rates["normal_rows"] == 200 and rates["anomalous_rows"] == 50
    # No candidate threshold has a better F1 than the one chosen.
    best = scoring.flag_rates(normal, anomalous, alone)["f1"]
    for t in np.linspace(-3, 6, 200):
        assert (scoring.flag_rates(normal, anomalous, t)["f1"] or 0.0) <= best + 1e-12


def test_target_fpr_threshold_never_exceeds_the_rate():
    errors = np.random.default_rng(1).exponential(1.0, 333)
    for fpr in (0.0, 0.01, 0.05, 0.1, 0.5):
        t = scoring.threshold_for_fpr(errors, fpr)
        assert (errors > t).mean() <= fpr
        # and it is the lowest such error: one step lower would exceed it
        lower = np.sort(errors)[np.sort(errors) < t]
        if len(lower):
            assert (errors > lower[-1]).mean() > fpr
