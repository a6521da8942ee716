"""Image and sequence features: (nested) list columns in Parquet and float_list
features in TFRecord, their shapes, per-row shape checks, and the conv and lstm
kinds end to end through the pipelines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
from browser import render_report, require_chromium
from conftest import write_tfrecord

from autoenc.artifact import load_artifact
from autoenc.errors import ConfigError, InputError
from autoenc.preprocessing import MomentStats, Normalizer
from autoenc.schema import infer_spec
from autoenc.validation import validate_batch
from autoenc_beam import score, train

NESTED = pa.list_(pa.list_(pa.float32()))


def blobs(n, size=8, seed=0):
    """n images of one Gaussian blob at a random place: a 2-D family of images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(1, size - 2, n), rng.uniform(1, size - 2, n)
    images = np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / 3.0)
    return (images * 255).astype(np.float32)


def test_shapes_come_from_declaration_type_or_first_row():
    table = pa.table(
        {
            "nested": pa.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], NESTED),
            "fixed": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12.0)), 12),
            "flat": pa.array([[1.0, 2.0, 3.0, 4.0]], pa.list_(pa.float64())),
            "x": [1.0],
        }
    )
    names = ["nested", "fixed", "flat", "x"]
    spec = infer_spec(table.schema, features=names, shapes=["flat=2,2,1"], first_rows=table, source="t")
    shapes = {f.name: f.shape for f in spec.features}
    # declared by name; fixed by the type; from the first row's nested lengths; scalar
    assert shapes == {"nested": (3, 2), "fixed": (12,), "flat": (2, 2, 1), "x": ()}
    assert spec.width == 6 + 12 + 4 + 1
    # An unnamed shape goes to the first tensor feature without a named one.
    spec = infer_spec(table.schema, features=names, shapes=["flat=4", "3,2,1"], first_rows=table, source="t")
    assert spec.features[0].shape == (3, 2, 1)
    with pytest.raises(InputError, match="list level 1 has|cannot hold"):
        infer_spec(table.schema, shapes=["fixed=5,3"], first_rows=table, source="t")


def test_shape_errors_name_the_column():
    schema = pa.schema([("img", pa.list_(pa.float32()))])
    with pytest.raises(InputError, match="List column\\(s\\) img join only with a known shape: --shape img="):
        infer_spec(schema, source="a.parquet")
    with pytest.raises(InputError, match="Cannot tell the shape of tensor column 'img'.*--shape img="):
        infer_spec(schema, features=["img"], source="a.parquet")
    with pytest.raises(InputError, match="2 unnamed --shape value"):
        infer_spec(schema, features=["img"], shapes=["4", "4"], source="a.parquet")
    with pytest.raises(InputError, match="'other', which is not a tensor feature"):
        infer_spec(schema, features=["img"], shapes=["other=4"], source="a.parquet")
    nested = pa.schema([("img", NESTED)])
    with pytest.raises(InputError, match="has 2 list levels .* needs at least 2 dimensions"):
        infer_spec(nested, features=["img"], shapes=["16"], source="a.parquet")


def test_rows_of_the_wrong_shape_are_rejected_with_their_lengths():
    table = pa.table(
        {
            "img": pa.array(
                [
                    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                    [[1.0, 2.0], [3.0, 4.0]],
                    None,
                    [[1.0, 2.0], [3.0, None], [5.0, 6.0]],
                    [[1.0, 2.0], [3.0, 4.0, 9.0], [5.0, 6.0]],
                ],
                NESTED,
            )
        }
    )
    spec = infer_spec(table.schema, shapes=["img=3,2"], source="t")
    checked = validate_batch(table.to_batches()[0], spec)
    assert checked.valid.tolist() == [True, False, False, False, False]
    np.testing.assert_array_equal(checked.features, [[1, 2, 3, 4, 5, 6]])
    assert checked.reasons == [
        "column 'img' has a list of 2 values at list level 1, expected 3 values (shape 3x2)",
        "column 'img' is null",
        "column 'img' has null, NaN or infinite values inside",
        "column 'img' has a list of 3 values at list level 2, expected 2 values (shape 3x2)",
    ]


def test_minmax_scales_each_tensor_feature_as_a_whole():
    x = np.array([[0.0, 10.0, 100.0, 5.0], [5.0, 20.0, 50.0, 7.0]])
    norm = Normalizer.from_stats(MomentStats.from_array(x), "minmax", sizes=[3, 1])
    np.testing.assert_allclose(norm.mean, [0, 0, 0, 5])
    np.testing.assert_allclose(norm.scale, [100, 100, 100, 2])
    z = norm.transform(x)
    assert z.min() >= 0 and z.max() <= 1


@pytest.mark.pipeline
@pytest.mark.parametrize("storage", ["nested", "tfrecord"])
def test_conv_trains_and_scores_images(storage, tmp_path):
    require_chromium()
    images = blobs(400)
    ids = [f"i{i}" for i in range(400)]
    if storage == "nested":
        path = tmp_path / "img.parquet"
        pq.write_table(pa.table({"id": ids, "img": pa.array(images.tolist(), NESTED)}), path)
        shape_args = ["--features=img"]  # the shape comes from the first row
    else:
        path = tmp_path / "img.tfrecord"
        write_tfrecord(pa.table({"id": ids, "img": pa.array(images.reshape(400, -1).tolist())}), str(path))
        shape_args = ["--shape=8,8,1"]
    model_dir = tmp_path / "m"
    train.run(
        [
            f"--input={path}",
            f"--model_dir={model_dir}",
            "--key_columns=id",
            "--model=conv",
            "--latent_dim=4",
            "--epochs=15",
            "--batch_size=32",
            "--n_init=1",
            "--init=random",
            *shape_args,
        ],
        save_main_session=False,
    )
    artifact = load_artifact(str(model_dir))
    feature = artifact.metadata.spec.features[0]
    assert feature.shape == ((8, 8) if storage == "nested" else (8, 8, 1))
    assert artifact.metadata.normalization.method == "minmax"
    assert artifact.metadata.hyperparameters["loss"] == "auto"
    # The training report draws the article's three rows: originals, latents, reconstructions.
    page = render_report(f"{artifact.path}/report.html")
    assert page.problems() == [], page.problems()
    assert "Originals, latent vectors and reconstructions" in page.text
    # loss, error histogram, latent space, originals/latents/reconstructions, highest-error images
    assert page.images == 5

    # Score normal images, noise images and rows of the wrong shape.
    noise = np.random.default_rng(1).uniform(0, 255, (10, 8, 8)).astype(np.float32)
    rows = list(blobs(50, seed=2)) + list(noise)
    score_ids = [f"n{i}" for i in range(50)] + [f"noise{i}" for i in range(10)] + ["short", "long"]
    values = [r.reshape(8, 8, 1).tolist() if storage == "tfrecord" else r.tolist() for r in rows]
    if storage == "nested":
        values += [rows[0][:7].tolist(), np.zeros((8, 9)).tolist()]
        table = pa.table({"id": score_ids, "img": pa.array(values, NESTED)})
        score_path = tmp_path / "score.parquet"
        pq.write_table(table, score_path)
    else:
        flat = [r.ravel().tolist() for r in rows] + [[1.0] * 63, [1.0] * 65]
        score_path = tmp_path / "score.tfrecord"
        write_tfrecord(pa.table({"id": score_ids, "img": pa.array(flat)}), str(score_path))
    summary = score.run(
        [f"--input={score_path}", f"--model_dir={model_dir}", f"--output={tmp_path / 'out'}", "--error_map"],
        save_main_session=False,
    )
    assert summary["counts"] == {**summary["counts"], "read": 62, "scored": 60, "rejected": 2}
    scores = pq.read_table(tmp_path / "out" / "scores")
    # The error map: one squared error per pixel, whose mean is the row's error;
    # the one feature takes the whole share.
    error_map = np.array(scores["error_map"].to_pylist())
    assert error_map.shape == (60, 64)
    np.testing.assert_allclose(error_map.mean(axis=1), scores["reconstruction_error"].to_numpy(), rtol=1e-4)
    assert {tuple(map(tuple, (d.values() for d in row))) for row in scores["top_features"].to_pylist()} <= {
        (("img", 1.0),),
        (("img", 0.0),),
    }
    errors = dict(zip(scores["id"].to_pylist(), scores["reconstruction_error"].to_numpy(), strict=True))
    normal = np.median([errors[f"n{i}"] for i in range(50)])
    assert min(errors[f"noise{i}"] for i in range(10)) > 3 * normal
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert set(reasons) == {"short", "long"}
    assert all("column 'img' has a list of" in r for r in reasons.values())


@pytest.mark.pipeline
@pytest.mark.parametrize(
    "kind, storage", [("lstm", "fixed_size_list"), ("lstm", "tfrecord"), ("transformer", "fixed_size_list")]
)
def test_sequence_kinds_train_and_score_sequences(kind, storage, tmp_path):
    rng = np.random.default_rng(0)
    t = 16
    phase, freq = rng.uniform(0, 6.28, 300), rng.uniform(0.3, 0.6, 300)
    seq = np.sin(freq[:, None] * np.arange(t)[None] + phase[:, None]).astype(np.float32)
    ids = [f"s{i}" for i in range(300)]
    if storage == "tfrecord":
        path = tmp_path / "seq.tfrecord"
        write_tfrecord(pa.table({"id": ids, "seq": pa.array(seq.tolist())}), str(path))
        shape_args = [f"--shape={t},1"]
    else:
        column = pa.FixedSizeListArray.from_arrays(pa.array(seq.ravel()), t)
        path = tmp_path / "seq.parquet"
        pq.write_table(pa.table({"id": ids, "seq": column}), path)
        shape_args = []
    model_dir = tmp_path / "m"
    train.run(
        [
            f"--input={path}",
            f"--model_dir={model_dir}",
            "--key_columns=id",
            f"--model={kind}",
            "--latent_dim=3",
            "--hidden_units=16",
            "--epochs=3",
            "--n_init=1",
            "--init=random",
            *shape_args,
        ],
        save_main_session=False,
    )
    artifact = load_artifact(str(model_dir))
    assert artifact.metadata.spec.features[0].shape == ((t, 1) if storage == "tfrecord" else (t,))
    assert artifact.metadata.normalization.method == "zscore"
    summary = score.run(
        [f"--input={path}", f"--model_dir={model_dir}", f"--output={tmp_path / 'out'}"],
        save_main_session=False,
    )
    assert summary["counts"]["scored"] == 300
    latent = pq.read_table(tmp_path / "out" / "scores")["latent"]
    assert len(latent[0].as_py()) == 3


def test_conv_needs_one_image_feature(article_parquet, tmp_path):
    with pytest.raises(ConfigError, match="--model=conv needs exactly one feature, an image"):
        train.run(
            [f"--input={article_parquet}", f"--model_dir={tmp_path}", "--model=conv"], save_main_session=False
        )


@pytest.mark.pipeline
def test_vae_on_images_samples_images_of_the_right_shape(tmp_path):
    from autoenc_beam import sample

    path = tmp_path / "img.parquet"
    pq.write_table(pa.table({"img": pa.array(blobs(200).tolist(), NESTED)}), path)
    model_dir = tmp_path / "m"
    train.run(
        [
            f"--input={path}",
            f"--model_dir={model_dir}",
            "--model=vae",
            "--loss=bce",
            "--latent_dim=2",
            "--features=img",
        ]
        + ["--hidden_units=32", "--epochs=2", "--n_init=1", "--init=random"],
        save_main_session=False,
    )
    assert load_artifact(str(model_dir)).metadata.normalization.method == "minmax"
    out = tmp_path / "s.parquet"
    sample.run([f"--model_dir={model_dir}", "-n", "5", f"--output={out}"])
    table = pq.read_table(out)
    images = np.array(table["img"].to_pylist())
    assert images.shape == (5, 8, 8)
    # Sigmoid output in [0, 1], scaled back to the training range 0..255.
    assert images.min() >= 0 and images.max() <= 255.01


def test_a_null_row_in_a_cast_nested_column_does_not_shift_the_others():
    # A null row that still spans values in the buffers (what a cast keeps).
    column = pa.compute.cast(
        pa.array([[[1, 2], [3, 4]], None, [[5, 6], [7, 8]]], pa.list_(pa.list_(pa.float32(), 2), 2)), NESTED
    )
    table = pa.table({"img": column})
    checked = validate_batch(table.to_batches()[0], infer_spec(table.schema, shapes=["img=2,2"], source="t"))
    assert checked.valid.tolist() == [True, False, True]
    np.testing.assert_array_equal(checked.features, [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_a_later_file_with_one_bad_length_loses_only_that_row():
    from autoenc.validation import conform_batch

    reference = pa.schema([("img", pa.list_(pa.float32(), 2))])
    later = pa.record_batch(
        {"img": pa.array([[1.0, 2.0], [1.0, 2.0, 3.0], [4.0, 5.0]], pa.list_(pa.float32()))}
    )
    spec = infer_spec(reference, source="first.parquet")
    conformed = conform_batch(later, reference, spec, source="later.parquet")
    checked = validate_batch(conformed.batch, spec, prior_reasons=conformed.reasons)
    assert checked.valid.tolist() == [True, False, True]
    assert "does not fit fixed_size_list" in checked.reasons[0]


def test_variable_lists_join_by_default_only_with_a_certain_shape():
    table = pa.table(
        {
            "tags": pa.array([[1, 2, 3], [1], [1, 2]]),
            "fixed": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6.0)), 2),
            "x": [1.0, 2.0, 3.0],
        }
    )
    assert infer_spec(table.schema, first_rows=table, source="t").names == ("fixed", "x")
    assert infer_spec(table.schema, shapes=["tags=3"], first_rows=table, source="t").names == (
        "tags",
        "fixed",
        "x",
    )
    with pytest.raises(InputError, match="names column 'tags' twice"):
        infer_spec(table.schema, shapes=["tags=3", "tags=3"], source="t")


def test_first_row_shape_skips_rows_with_holes():
    table = pa.table(
        {"img": pa.array([None, [None, [1.0, 2.0]], [[], [1.0]], [[1.0, 2.0], [3.0, 4.0]]], NESTED)}
    )
    spec = infer_spec(table.schema, features=["img"], first_rows=table, source="t")
    assert spec.features[0].shape == (2, 2)


def test_conv_on_a_flat_tfrecord_image_without_shape_stops_before_the_data_pass(tmp_path):
    path = tmp_path / "img.tfrecord"
    write_tfrecord(pa.table({"img": pa.array(blobs(20).reshape(20, -1).tolist())}), str(path))
    with pytest.raises(
        ConfigError, match="conv needs exactly one feature, an image .* declare it with --shape"
    ):
        train.run([f"--input={path}", f"--model_dir={tmp_path / 'm'}", "--model=conv", "--features=img"])
    assert not (tmp_path / "m").exists()
