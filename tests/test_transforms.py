import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from autoenc_beam import io
from autoenc_beam.transforms import StageRows


def _stage_and_merge(tmp_path, chunks, order_seed):
    """Stages (key, rows) chunks arriving in a shuffled order, then merges the
    staged headers' statistics in file-name order, as training does."""
    from autoenc.preprocessing import MomentStats
    from autoenc_beam.train import read_headers

    directory = str(tmp_path / f"staging-{order_seed}")
    shuffled = list(chunks)
    np.random.default_rng(order_seed).shuffle(shuffled)
    with test_pipeline.TestPipeline() as p:
        counts = p | beam.Create(shuffled, reshuffle=True) | StageRows(directory, "train")
        assert_that(counts | beam.CombinePerKey(sum), equal_to([("train", sum(len(r) for _, r in chunks))]))
    files = io.list_files(directory, ".tfrecord")
    assert [f.rsplit("/", 1)[-1] for f, _ in files] == [f"train-{key}.tfrecord" for key, _ in sorted(chunks)]
    return MomentStats.merge([h.stats for h in read_headers(files, chunks[0][1].shape[1])])


@pytest.mark.parametrize("n_chunks", [1, 3, 40])
def test_staged_statistics_equal_numpy_and_do_not_depend_on_arrival_order(tmp_path, n_chunks):
    rng = np.random.default_rng(n_chunks)
    x = rng.lognormal(size=(3_000, 4)) * [1, 10, 1e4, 1e-3]
    parts = np.array_split(x, np.sort(rng.choice(np.arange(1, 3_000), n_chunks - 1, replace=False)))
    chunks = [(io.chunk_key(0, i * 10_000), part) for i, part in enumerate(parts)]
    first = _stage_and_merge(tmp_path, chunks, order_seed=1)
    second = _stage_and_merge(tmp_path, chunks, order_seed=2)
    assert first.count == len(x)
    np.testing.assert_allclose(first.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(first.std, x.std(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(first.maximum, x.max(axis=0))
    # Merged in the chunks' order in the input, not in arrival order: bit for bit equal.
    np.testing.assert_array_equal(first.to_array(), second.to_array())


def test_batch_coder_round_trips_chunks_and_estimates_size_without_encoding(monkeypatch):
    import pickle

    import pyarrow as pa

    batch = pa.record_batch({"x": np.arange(1000, dtype=np.float64), "id": [str(i) for i in range(1000)]})
    chunk = io.Chunk("f.parquet", 7, batch, None)
    coder = io.BatchCoder()
    back = coder.decode(coder.encode(chunk))
    assert back.source == "f.parquet" and back.first_row == 7 and back.batch.equals(batch)

    def no_pickling(*args, **kwargs):
        raise AssertionError("estimate_size pickled the element")

    monkeypatch.setattr(pickle, "dumps", no_pickling)
    assert coder.estimate_size(chunk) == batch.nbytes >= 8000
