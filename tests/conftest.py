"""Shared fixtures: seeded example data and one tiny trained artifact per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from autoenc.datasets import FEATURES, article_table  # noqa: E402

# Small and fast: enough rows and epochs for the model to learn the curve's
# shape roughly, so planted anomalies score clearly higher than normal rows.
TINY_TRAIN_ARGS = [
    "--key_columns=id",
    f"--features={','.join(FEATURES)}",
    "--latent_dim=1",
    "--hidden_units=32,32",
    "--epochs=40",
    "--patience=5",
    "--batch_size=64",
    "--n_init=1",
]


def write_tfrecord(table: pa.Table, path: str, *, gzip: bool = False) -> None:
    """Writes a table as tf.train.Example records (floats and lists of floats as float_list)."""
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    with tf.io.TFRecordWriter(path, options) as writer:
        for row in table.to_pylist():
            feature = {}
            for name, value in row.items():
                if value is None:
                    continue
                if isinstance(value, list):
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
                elif isinstance(value, str):
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                elif isinstance(value, int):
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


@pytest.fixture(scope="session", autouse=True)
def java_temporary_files(tmp_path_factory):
    """Keeps the temporary files of every Java process the tests start (Flink and
    Spark clusters, Beam's job servers) in one directory, removed at the end.

    Left in the system's temporary directory, a killed TaskManager's working
    directory (its blob store holds the job's jar: about 0.5 GB) stays there
    for good, and repeated runs fill the disk.
    """
    import shutil

    directory = tmp_path_factory.mktemp("java-tmp")
    with pytest.MonkeyPatch.context() as patch:
        before = os.environ.get("JAVA_TOOL_OPTIONS", "")
        patch.setenv("JAVA_TOOL_OPTIONS", f"{before} -Djava.io.tmpdir={directory}".strip())
        yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def article_parquet(tmp_path_factory) -> str:
    """2,000 rows of the article's data as one Parquet file with 4 row groups."""
    path = str(tmp_path_factory.mktemp("data") / "article.parquet")
    pq.write_table(article_table(2_000, seed=0), path, row_group_size=500)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, article_parquet) -> str:
    """A model directory trained once per session by the real training pipeline."""
    from autoenc_beam import train

    model_dir = str(tmp_path_factory.mktemp("model"))
    train.run(
        [f"--input={article_parquet}", f"--model_dir={model_dir}"] + TINY_TRAIN_ARGS, save_main_session=False
    )
    return model_dir


@pytest.fixture
def rng():
    return np.random.default_rng(0)
