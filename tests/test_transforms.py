import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms import StatsCombineFn


@pytest.mark.parametrize("n_chunks", [1, 3, 40])
def test_stats_combine_fn_equals_numpy_on_the_whole_data(n_chunks):
    rng = np.random.default_rng(n_chunks)
    x = rng.lognormal(size=(3_000, 4)) * [1, 10, 1e4, 1e-3]
    chunks = np.array_split(x, np.sort(rng.choice(np.arange(1, 3_000), n_chunks - 1, replace=False)))

    def check(outputs):
        (stats,) = outputs
        assert stats.count == len(x)
        np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.std, x.std(axis=0), rtol=1e-9)
        np.testing.assert_array_equal(stats.maximum, x.max(axis=0))

    with test_pipeline.TestPipeline() as p:
        stats = p | beam.Create(chunks, reshuffle=True) | beam.CombineGlobally(StatsCombineFn(4))
        assert_that(stats, check)


def test_stats_combine_fn_on_no_rows_is_empty():
    def check(outputs):
        (stats,) = outputs
        assert stats.count == 0

    with test_pipeline.TestPipeline() as p:
        assert_that(
            p
            | beam.Create([], reshuffle=False).with_output_types(np.ndarray)
            | beam.CombineGlobally(StatsCombineFn(2)),
            check,
        )


def test_batch_coder_round_trips_chunks_and_estimates_size_without_encoding(monkeypatch):
    import pickle

    import pyarrow as pa

    from pipelines import io

    batch = pa.record_batch({"x": np.arange(1000, dtype=np.float64), "id": [str(i) for i in range(1000)]})
    chunk = io.Chunk("f.parquet", 7, batch, None)
    coder = io.BatchCoder()
    back = coder.decode(coder.encode(chunk))
    assert back.source == "f.parquet" and back.first_row == 7 and back.batch.equals(batch)

    def no_pickling(*args, **kwargs):
        raise AssertionError("estimate_size pickled the element")

    monkeypatch.setattr(pickle, "dumps", no_pickling)
    assert coder.estimate_size(chunk) == batch.nbytes >= 8000
