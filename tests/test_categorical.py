"""Categorical columns: vocabularies learned in the Beam pass, one-hot blocks
reconstructed by a softmax and scored by cross-entropy, unseen values scored
in the out-of-vocabulary slot and counted, on Palmer penguins (strings with
missing values) and on tables whose anomalies are visible only in the
categorical columns."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from autoenc import Autoencoder
from autoenc.artifact import load_artifact
from autoenc.categorical import choose_categories, encode, value_counts
from autoenc.schema import infer_spec
from autoenc.validation import validate_batch
from autoenc_beam import score, train

SMALL = ["--hidden_units=32,32", "--epochs=60", "--patience=10", "--batch_size=64", "--n_init=1"]


def penguins() -> pa.Table:
    """Palmer penguins as its CSV ships (``NA`` is null), with a row id."""
    import palmerpenguins

    path = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    return table.append_column("row", pa.array(np.arange(table.num_rows)))


def combinations(n: int, n_anomalies: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """Rows whose categorical columns a and b go together (each a with two
    usual b's); the first ``n_anomalies`` rows pair them as never in
    training. Every value on its own is common, and the numeric columns are
    noise alike in both: only the combination gives an anomaly away."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, n)
    b = (a + rng.integers(0, 2, n)) % 6
    anomalous = np.arange(n) < n_anomalies
    b[anomalous] = (a[anomalous] + 3) % 6
    table = pa.table(
        {
            "row": np.arange(n),
            "a": [f"a{v}" for v in a],
            "b": pa.array([f"b{v}" for v in b]).dictionary_encode(),
            "flag": rng.random(n) < 0.5,
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    )
    return table, anomalous


def fit_on(tmp_path, table: pa.Table, *extra: str, name: str = "train", model: str = "m"):
    """Writes ``table`` to ``<name>.parquet`` and trains ``<model>/`` on it
    (key column ``row``); returns the artifact."""
    pq.write_table(table, tmp_path / f"{name}.parquet")
    return train.run(
        [
            f"--input={tmp_path / f'{name}.parquet'}",
            f"--model_dir={tmp_path / model}",
            "--key_columns=row",
            *extra,
        ]
    )


def score_on(tmp_path, table: pa.Table, name: str, *extra: str, model: str = "m", out: str = "o") -> dict:
    """Writes ``table`` to ``<name>.parquet`` and scores it into ``<out>/``; returns the summary."""
    pq.write_table(table, tmp_path / f"{name}.parquet")
    return score.run(
        [
            f"--input={tmp_path / f'{name}.parquet'}",
            f"--model_dir={tmp_path / model}",
            f"--output={tmp_path / out}",
            *extra,
        ]
    )


# -- the vocabulary and the codes ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "é", ""])), max_size=40),
    limit=st.integers(1, 5),
    nulls=st.booleans(),
)
def test_vocabulary_is_the_most_frequent_values_and_every_other_takes_the_oov_slot(values, limit, nulls):
    column = pa.array(values, pa.string())
    counts = value_counts(column, nulls=nulls)
    categories = choose_categories(counts, max_categories=limit)
    assert len(categories) == min(limit, len(counts))
    # Most frequent first; nothing left out is more frequent than what was kept.
    kept = [counts[c] for c in categories]
    assert kept == sorted(kept, reverse=True)
    assert all(counts[v] <= min(kept) for v in counts if v not in categories)
    codes = encode(column, categories)
    for value, code in zip(values, codes, strict=True):
        if value in categories:
            assert categories[code] == value
        else:
            assert code == len(categories)


def test_booleans_and_integers_are_categories_by_their_text():
    assert value_counts(pa.array([True, False, True, None]), nulls=True) == {"true": 2, "false": 1, None: 1}
    assert encode(pa.array([3, 7, None], pa.int64()), ("7", "3")).tolist() == [1, 0, 2]
    # The same categories whichever way a tool stored them.
    assert encode(pa.array(["7", "3"]).dictionary_encode(), ("7", "3")).tolist() == [0, 1]


def test_a_null_is_rejected_or_its_own_category_and_unseen_values_are_counted():
    batch = pa.record_batch({"c": pa.array(["a", None, "zz", "b"]), "x": [1.0, 2.0, 3.0, 4.0]})
    spec = infer_spec(batch.schema, source="t").with_vocabularies({"c": ("a", "b")})
    checked = validate_batch(batch, spec)
    assert checked.reasons == ["column 'c' is null"]
    assert checked.features[:, :3].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert checked.unseen == {"c": 1} and checked.out_of_vocabulary.tolist() == [False, True, False]
    with_null = spec.with_vocabularies({"c": ("a", None, "b")})
    checked = validate_batch(batch, with_null, missing="impute")
    assert checked.valid.all()
    assert checked.features[1, :4].tolist() == [0, 1, 0, 0] and checked.unseen == {"c": 1}


# -- end to end ---------------------------------------------------------------------


def test_penguins_train_and_score_with_categorical_columns(tmp_path):
    table = penguins()
    pq.write_table(table, tmp_path / "penguins.parquet")
    model_dir, out = tmp_path / "m", tmp_path / "out"
    artifact = train.run(
        [
            f"--input={tmp_path / 'penguins.parquet'}",
            f"--model_dir={model_dir}",
            "--key_columns=row",
            "--missing=impute",
            "--max_categories=2",
            "--epochs=20",
            "--n_init=1",
        ]
    )
    spec = artifact.metadata.spec
    assert [f.name for f in spec.categorical_features] == ["species", "island", "sex"]
    # The vocabulary: the two most frequent values of each column (sex: its nulls are fewer).
    frame = table.to_pandas()
    for name in ("species", "island", "sex"):
        expected = list(frame[name].value_counts().index[:2])
        assert list(spec.features[spec.names.index(name)].categories) == expected, name
    counted = artifact.metadata.input["categorical"]["island"]
    assert counted["distinct"] == 3 and counted["rows"] == 344
    assert counted["rows_kept"] == int(frame["island"].value_counts().iloc[:2].sum())

    summary = score.run(
        [
            f"--input={tmp_path / 'penguins.parquet'}",
            f"--model_dir={model_dir}",
            f"--output={out}",
            "--explain_top_k=3",
            "--passthrough",
        ]
    )
    assert summary["counts"]["read"] == 344 == summary["counts"]["scored"] + summary["counts"]["rejected"]
    scores = pq.read_table(out / "scores").to_pandas()
    assert np.isfinite(scores["reconstruction_error"]).all()
    # The third island, the third species and a sex left out (null) take the
    # out-of-vocabulary slot: counted, per column and in all.
    outside = {name: ~frame[name].isin(expected_top(frame, name)) for name in ("species", "island", "sex")}
    assert summary["unseen"]["rows"] == int((outside["species"] | outside["island"] | outside["sex"]).sum())
    for name, mask in outside.items():
        assert summary["unseen"]["by_column"][name]["rows"] == int(mask.sum()), name
    named = {item["feature"] for items in scores["top_features"] for item in items}
    assert {"species", "island"} & named
    assert not any("=" in name for name in named)  # columns, not one-hot slots


def expected_top(frame, name):
    return list(frame[name].value_counts(dropna=False).index[:2])


def test_anomalies_only_in_categorical_combinations_are_caught(tmp_path):
    normal, _ = combinations(3000, 0, seed=1)
    test, anomalous = combinations(2000, 100, seed=2)
    fit_on(tmp_path, normal, "--epochs=100", "--n_init=1")
    summary = score_on(tmp_path, test, "test")
    scores = pq.read_table(tmp_path / "o" / "scores").to_pandas().sort_values("row")
    auc = roc_auc_score(anomalous, scores["reconstruction_error"])
    assert auc >= 0.95, auc
    # Every value is one the model knows: nothing is out of vocabulary.
    assert summary["unseen"]["rows"] == 0 and summary["unseen"]["warning"] is None


def test_new_categories_are_scored_counted_and_warn_of_drift(tmp_path):
    normal, _ = combinations(2000, 0, seed=1)
    fit_on(tmp_path, normal, *SMALL)
    fresh, _ = combinations(500, 0, seed=3)
    a = fresh["a"].to_pylist()
    a[:100] = ["a_new"] * 100
    fresh = fresh.set_column(1, "a", pa.array(a))
    summary = score_on(tmp_path, fresh, "fresh", "--explain_top_k=1", out="out")
    assert summary["counts"]["scored"] == 500
    assert summary["unseen"]["rows"] == 100
    assert summary["unseen"]["by_column"]["a"] == {"rows": 100, "share": 0.2, "training_share": 0.0}
    assert "'a' outside its 6 categories" in summary["drift"]["warning"]
    scores = pq.read_table(tmp_path / "out" / "scores").to_pandas().sort_values("row")
    unseen, seen = scores["reconstruction_error"][:100], scores["reconstruction_error"][100:]
    assert unseen.median() > seen.quantile(0.95)
    assert {items[0]["feature"] for items in scores["top_features"][:100]} == {"a"}


def test_files_of_other_tools_and_tfrecord_bytes_features_give_the_same_categories(tmp_path):
    """A column stored as a dictionary by one writer and as plain strings by
    another, and the same rows as TFRecord bytes features, learn the same
    vocabulary and score alike."""
    import tensorflow as tf

    table, _ = combinations(1200, 0, seed=4)
    pq.write_table(table.slice(0, 600), tmp_path / "part-0.parquet")
    plain = table.slice(600).set_column(2, "b", table.slice(600)["b"].cast(pa.string()))
    pq.write_table(plain, tmp_path / "part-1.parquet")
    with tf.io.TFRecordWriter(str(tmp_path / "rows.tfrecord")) as writer:
        for row in table.to_pylist():
            feature = {
                "row": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["row"]])),
                "a": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["a"].encode()])),
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["b"].encode()])),
                "flag": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row["flag"])])),
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[row["x"]])),
                "y": tf.train.Feature(float_list=tf.train.FloatList(value=[row["y"]])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    common = ["--key_columns=row", "--features=a,b,x,y", *SMALL, "--epochs=5"]
    from_parquet = train.run(
        [f"--input={tmp_path / 'part-*.parquet'}", f"--model_dir={tmp_path / 'p'}", *common]
    )
    from_tfrecord = train.run(
        [f"--input={tmp_path / 'rows.tfrecord'}", f"--model_dir={tmp_path / 't'}", *common]
    )
    for artifact in (from_parquet, from_tfrecord):
        spec = artifact.metadata.spec
        assert [f.name for f in spec.categorical_features] == ["a", "b"]
        assert artifact.metadata.rows["read"] == 1200 and artifact.metadata.rows["rejected"] == 0
    assert [f.categories for f in from_parquet.metadata.spec.features] == [
        f.categories for f in from_tfrecord.metadata.spec.features
    ]


def test_the_saved_model_takes_categories_as_strings_and_scores_as_autoenc_does(tmp_path):
    import tensorflow as tf

    from autoenc.export import export_saved_model

    table, _ = combinations(1500, 30, seed=5)
    pq.write_table(table, tmp_path / "rows.parquet")
    train.run(
        [f"--input={tmp_path / 'rows.parquet'}", f"--model_dir={tmp_path / 'm'}", "--key_columns=row", *SMALL]
    )
    score.run(
        [
            f"--input={tmp_path / 'rows.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            f"--output={tmp_path / 'out'}",
            "--passthrough",
        ]
    )
    scores = pq.read_table(tmp_path / "out" / "scores").to_pandas().sort_values("row")
    path = export_saved_model(str(tmp_path / "m"), str(tmp_path / "serving"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    inputs = {
        "a": tf.constant(scores["a"].astype(str).values),
        "b": tf.constant(scores["b"].astype(str).values),
        "flag": tf.constant(np.where(scores["flag"], "true", "false")),
        "x": tf.constant(scores["x"].values),
        "y": tf.constant(scores["y"].values),
    }
    out = serve(**inputs)
    np.testing.assert_allclose(out["reconstruction_error"].numpy(), scores["reconstruction_error"], rtol=1e-6)
    assert (out["is_anomaly"].numpy() == scores["is_anomaly"].values).all()
    # A value never seen takes the out-of-vocabulary slot, and scores higher.
    inputs["a"] = tf.constant(["a_new"] * len(scores))
    assert np.median(serve(**inputs)["reconstruction_error"].numpy()) > scores[
        "reconstruction_error"
    ].quantile(0.95)
    exported = json.loads(open(glob.glob(os.path.join(path, "assets", "*.json"))[0]).read())
    inputs_of = {i["feature"]: i for i in exported["signatures"]["serving_default"]["inputs"]}
    assert inputs_of["a"]["dtype"] == "string" and sorted(inputs_of["a"]["categories"]) == [
        f"a{i}" for i in range(6)
    ]


def test_estimator_takes_a_dataframe_with_categorical_columns_and_flags_new_combinations():
    normal, _ = combinations(2000, 0, seed=1)
    test, anomalous = combinations(600, 30, seed=2)
    ae = Autoencoder(hidden_units=(32, 32), epochs=60, n_init=1, seed=0).fit(
        normal.drop_columns(["row"]).to_pandas()
    )
    spec = ae.metadata_.spec
    assert [f.describe() for f in spec.categorical_features] == [
        "a (categorical, 6 categories)",
        "b (categorical, 6 categories)",
        "flag (categorical, 2 categories)",
    ]
    assert roc_auc_score(anomalous, ae.decision_function(test.drop_columns(["row"]).to_pandas())) >= 0.95


def test_model_artifact_keeps_the_vocabulary_and_reloads(tmp_path):
    table, _ = combinations(800, 0, seed=6)
    artifact = fit_on(tmp_path, table, "--categorical_columns=a", "--max_categories=4", *SMALL, "--epochs=3")
    loaded = load_artifact(str(tmp_path / "m"))
    assert loaded.metadata.spec == artifact.metadata.spec
    a = loaded.metadata.spec.features[loaded.metadata.spec.names.index("a")]
    assert len(a.categories) == 4 and a.size == 5
    metadata = json.loads((tmp_path / "m" / artifact.version / "metadata.json").read_text())
    assert metadata["format_version"] == 2
    assert {f["name"]: f.get("categories") for f in metadata["features"]}["a"] == list(a.categories)
    # Only the 4 most frequent values of a are categories; the other 2 share the OOV slot.
    assert artifact.metadata.input["categorical"]["a"]["distinct"] == 6
    assert artifact.metadata.input["categorical"]["a"]["kept"] == 4


@pytest.mark.parametrize("model", ["vae", "sparse", "pca"])
def test_every_tabular_kind_takes_categorical_columns(tmp_path, model):
    table, _ = combinations(600, 0, seed=7)
    artifact = fit_on(tmp_path, table, f"--model={model}", *SMALL, "--epochs=3", name="rows")
    summary = score_on(tmp_path, table, "rows")
    assert summary["counts"]["scored"] == 600
    assert artifact.metadata.model_kind == model
    if model == "vae":
        from autoenc_beam import sample

        generated = sample.run(
            [f"--model_dir={tmp_path / 'm'}", "-n", "300", f"--output={tmp_path / 's.parquet'}"]
        )
        assert generated.num_rows == 300
        assert set(generated["a"].to_pylist()) <= {f"a{i}" for i in range(6)} | {None}
        assert generated.schema.field("flag").type == pa.bool_()


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "é", "🐧", "a" * 5000, "NULL"])),
        min_size=1,
        max_size=30,
    ),
    categories=st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=5, unique=True),
    dictionary=st.booleans(),
    impute=st.booleans(),
)
def test_every_row_is_one_hot_or_rejected_and_unseen_rows_are_counted(values, categories, dictionary, impute):
    """Hostile text (empty, whitespace, emoji, 5,000 characters, the word
    NULL), nulls, dictionary-encoded or plain: each row is rejected (a null
    under reject without a null category) or one-hot in exactly one slot, and
    the rows in the OOV slot are the ones counted."""
    column = pa.array(values, pa.string())
    if dictionary:
        column = column.dictionary_encode()
    batch = pa.record_batch({"c": column, "x": np.arange(len(values), dtype=np.float64)})
    spec = infer_spec(batch.schema, features=["c", "x"], source="t").with_vocabularies(
        {"c": tuple(categories)}
    )
    if not categories:
        spec = spec.with_vocabularies({"c": ("only",)})
    cats = spec.features[0].categories
    checked = validate_batch(batch, spec, missing="impute" if impute else "reject")
    rejected = [v is None and not impute and None not in cats for v in values]
    assert checked.valid.tolist() == [not r for r in rejected]
    assert checked.reasons == ["column 'c' is null"] * sum(rejected)
    block = checked.features[:, : len(cats) + 1]
    assert (block.sum(axis=1) == 1).all() and set(np.unique(block)) <= {0.0, 1.0}
    kept = [v for v, r in zip(values, rejected, strict=True) if not r]
    expected_slot = [cats.index(v) if v in cats else len(cats) for v in kept]
    assert block.argmax(axis=1).tolist() == expected_slot
    unseen = sum(slot == len(cats) for slot in expected_slot)
    assert (checked.unseen or {}).get("c", 0) == unseen
    assert int(checked.out_of_vocabulary.sum()) == unseen


def test_hostile_categorical_rows_are_scored_or_rejected_and_counts_reconcile(tmp_path):
    """Through the pipelines: a null key, a null category, a 10,000-character
    value, emoji and an empty string; every row is scored or rejected with
    its reason, never lost."""
    normal, _ = combinations(1500, 0, seed=10)
    pq.write_table(normal, tmp_path / "train.parquet")
    train.run(
        [
            f"--input={tmp_path / 'train.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            "--key_columns=row",
            *SMALL,
            "--epochs=5",
        ]
    )
    rows, _ = combinations(50, 0, seed=11)
    a = rows["a"].to_pylist()
    a[:5] = [None, "x" * 10_000, "🐧", "", "a1 "]
    keys = rows["row"].to_pylist()
    keys[10] = None
    rows = rows.set_column(1, "a", pa.array(a)).set_column(0, "row", pa.array(keys, pa.int64()))
    pq.write_table(rows, tmp_path / "hostile.parquet")
    summary = score.run(
        [
            f"--input={tmp_path / 'hostile.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            f"--output={tmp_path / 'o'}",
        ]
    )
    assert summary["counts"]["read"] == 50 and summary["reconciled"]
    assert summary["counts"]["scored"] == 48 and summary["counts"]["rejected"] == 2
    rejected = pq.read_table(tmp_path / "o" / "rejected").to_pandas()
    assert sorted(rejected["reason"]) == sorted(["column 'a' is null", "key column 'row' is null"])
    assert summary["unseen"]["by_column"]["a"]["rows"] == 4
    scores = pq.read_table(tmp_path / "o" / "scores").to_pandas().set_index("row")
    assert scores.loc[[1, 2, 3, 4], "anomaly_score"].min() > 0.9


def test_score_transform_and_runinference_handler_take_rows_with_categories(tmp_path):
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that

    from autoenc_beam import AutoencoderModelHandler, Score

    normal, _ = combinations(1500, 0, seed=12)
    fit_on(tmp_path, normal, *SMALL)
    probe, anomalous = combinations(40, 10, seed=13)
    score_on(tmp_path, probe, "probe")
    expected = pq.read_table(tmp_path / "o" / "scores").to_pandas().set_index("row")["reconstruction_error"]
    rows = [{**r, "b": str(r["b"])} for r in probe.to_pylist()]
    wanted = expected.to_dict()

    def agrees(kind):
        def check(found):
            assert sorted(row for row, _ in found) == sorted(wanted), kind
            for row, error in found:
                np.testing.assert_allclose(error, wanted[row], rtol=1e-6, err_msg=f"{kind} row {row}")

        return check

    with beam.Pipeline() as p:
        created = p | beam.Create(rows)
        result = created | Score(str(tmp_path / "m"))
        assert_that(
            result.scores | "Pairs" >> beam.Map(lambda r: (r["row"], r["reconstruction_error"])),
            agrees("Score"),
            label="ScoreAgrees",
        )
        inferred = created | "Handler" >> RunInference(AutoencoderModelHandler(str(tmp_path / "m")))
        assert_that(
            inferred
            | "HandlerPairs" >> beam.Map(lambda r: (r.example["row"], r.inference.reconstruction_error)),
            agrees("AutoencoderModelHandler"),
            label="HandlerAgrees",
        )
    assert expected[anomalous[expected.index]].min() > expected[~anomalous[expected.index]].median()
