import numpy as np
import pytest

from autoenc.reservoir import Reservoir


def test_under_capacity_every_row_is_kept_in_order():
    r = Reservoir(100, seed=0)
    for start in range(0, 90, 7):
        r.add(x=np.arange(start, min(start + 7, 90)), y=-np.arange(start, min(start + 7, 90)))
    assert r.rows == 90 and not r.sampled
    np.testing.assert_array_equal(r.columns()["x"], np.arange(90))
    np.testing.assert_array_equal(r.columns()["y"], -np.arange(90))


def test_over_capacity_a_uniform_aligned_sample_of_capacity_rows():
    kept = []
    for seed in range(20):
        r = Reservoir(500, seed=seed)
        for start in range(0, 20_000, 1_337):
            x = np.arange(start, min(start + 1_337, 20_000))
            r.add(x=x, square=x.astype(np.float64) ** 2)
        columns = r.columns()
        assert r.rows == 20_000 and r.sampled and len(columns["x"]) == 500
        assert len(np.unique(columns["x"])) == 500
        np.testing.assert_array_equal(columns["square"], columns["x"].astype(np.float64) ** 2)
        kept.append(columns["x"])
    # Every part of the stream is equally likely to be kept (10 bins, 10,000 draws).
    counts = np.histogram(np.concatenate(kept), bins=10, range=(0, 20_000))[0]
    chi2 = (((counts - 1000) ** 2) / 1000).sum()
    assert chi2 < 27.9, counts  # the 0.001 critical value, 9 degrees of freedom


def test_the_same_seed_and_stream_give_the_same_sample():
    def sample(seed):
        r = Reservoir(50, seed=seed)
        for start in range(0, 1000, 64):
            r.add(x=np.arange(start, min(start + 64, 1000)))
        return r.columns()["x"]

    np.testing.assert_array_equal(sample(1), sample(1))
    assert not np.array_equal(sample(1), sample(2))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        Reservoir(0)
