import numpy as np
import pytest

from autoenc.preprocessing import MomentStats, Normalizer


@pytest.mark.parametrize("n_parts", [1, 2, 7, 50])
def test_merged_stats_match_numpy_for_any_split(rng, n_parts):
    x = rng.normal(3.0, 10.0, size=(5_000, 5)) + np.array([0, 1e6, -5, 0, 1e-3])
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=n_parts - 1, replace=False))
    parts = [MomentStats.from_array(p) for p in np.split(x, cuts)]
    rng.shuffle(parts)
    stats = MomentStats.merge(parts)
    assert stats.count == len(x)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x.std(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(stats.minimum, x.min(axis=0))
    np.testing.assert_array_equal(stats.maximum, x.max(axis=0))


def test_empty_parts_merge_away(rng):
    x = rng.normal(size=(10, 3))
    stats = MomentStats.merge(
        [MomentStats.empty(3), MomentStats.from_array(x), MomentStats.from_array(x[:0])]
    )
    np.testing.assert_allclose(stats.mean, x.mean(axis=0))


def test_constant_feature_normalizes_to_zero_not_nan():
    x = np.column_stack([np.full(10, 7.0), np.arange(10.0)])
    norm = Normalizer.from_stats(MomentStats.from_array(x))
    z = norm.transform(x)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 0], 0.0)
    np.testing.assert_allclose(norm.inverse_transform(z), x, atol=1e-6)
