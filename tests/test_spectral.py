import numpy as np
import pytest

from autoenc.datasets import article_features
from autoenc.errors import ConfigError
from autoenc.spectral import spectral_coordinates


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_coordinate_orders_the_article_curve(seed):
    """Z-scored [z^2, z^3, sin z, exp z] is a curve whose points crowd near z = 0 and
    spread out towards z = 5; the coordinate must still follow z monotonically."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-5, 5, 800)
    x = article_features(z)
    coords = spectral_coordinates((x - x.mean(0)) / x.std(0), 1)
    assert coords.shape == (800, 1)
    assert abs(spearman(coords[:, 0], z)) > 0.999


def test_coordinates_are_standardized_ranks():
    rng = np.random.default_rng(0)
    coords = spectral_coordinates(rng.normal(size=(300, 5)), 3)
    assert coords.shape == (300, 3)
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(coords.std(0), 1, rtol=1e-12)
    # Each column holds the ranks 0..n-1, shifted and scaled.
    for j in range(3):
        assert len(np.unique(coords[:, j])) == 300


def test_separate_clusters_are_joined_and_told_apart():
    """Two blobs far apart, each with a line through it: the spanning tree joins
    them, so the coordinate is finite and separates the blobs."""
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1, 400)
    a = np.stack([t[:200], np.zeros(200)], axis=1)
    b = np.stack([t[200:], np.zeros(200)], axis=1) + [0, 100]
    coords = spectral_coordinates(np.vstack([a, b]) + rng.normal(scale=1e-3, size=(400, 2)), 1)[:, 0]
    assert np.all(np.isfinite(coords))
    assert coords[:200].max() < coords[200:].min() or coords[200:].max() < coords[:200].min()


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(ConfigError, match="Received: 3 rows for dim=2"):
        spectral_coordinates(np.zeros((3, 2)), 2)
