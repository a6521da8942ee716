"""``autoenc export``: a SavedModel that gives ``autoenc score``'s numbers on raw
rows, loaded with plain ``tf.saved_model.load`` where autoenc cannot be imported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor
from apache_beam.testing.util import BeamAssertException, assert_that

from autoenc import Autoencoder
from autoenc.artifact import load_artifact
from autoenc.datasets import FEATURES, article_table, planted_anomalies
from autoenc.export import (
    METADATA_ASSET,
    _quantile_interpolation,
    export_saved_model,
    input_name,
    next_version_number,
)
from autoenc.scoring import anomaly_score
from autoenc_beam import cli, score

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("dense", "vae", "conv", "transformer")
# Small and fast: the numbers must agree, not be good.
TINY = dict(epochs=3, patience=3, n_init=1, init="random", seed=3)
OUTPUTS = (
    "latent",
    "latent_distance",
    "reconstruction_error",
    "anomaly_score",
    "combined_score",
    "total_distance",
    "is_anomaly",
)
IMAGE = (8, 8, 1)
SEQUENCE = (12, 1)

# Runs in a fresh interpreter where autoenc and Keras cannot be imported: loads
# each SavedModel with plain tf.saved_model.load and scores the rows through
# both signatures. argv[1]: a JSON job file.
ISOLATED = r"""
import json, sys
for blocked in ("autoenc", "keras", "tf_keras"):
    sys.modules[blocked] = None
try:
    import autoenc
except ImportError:
    pass
else:
    raise SystemExit("autoenc is importable")
import numpy as np
import tensorflow as tf

for job in json.load(open(sys.argv[1])):
    model = tf.saved_model.load(job["path"])
    rows = np.load(job["rows"])
    inputs, start = {}, 0
    for name, shape in job["inputs"]:
        size = int(np.prod(shape))
        inputs[name] = tf.constant(rows[:, start : start + size].reshape([-1, *shape]))
        start += size
    named = model.signatures["serving_default"](**inputs)
    flat = model.signatures["score_rows"](rows=tf.constant(rows))
    called = model(tf.constant(rows))
    out = {k: v.numpy() for k, v in named.items()}
    out.update({"score_rows." + k: v.numpy() for k, v in flat.items()})
    out.update({"call." + k: v.numpy() for k, v in called.items()})
    np.savez(job["out"], **out)
    print(json.dumps({"path": job["path"], "version": model.autoenc_model_version.numpy().decode()}))
"""


def _images(n: int, seed: int) -> np.ndarray:
    """Noise with a vertical bar in every image, [n, 8, 8, 1]."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.2, (n, *IMAGE))
    images[:, 2:6, 3:5, 0] += 0.7
    return images


def _sequences(n: int, seed: int) -> np.ndarray:
    """Sine waves of random phase, [n, 12, 1]."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return np.sin(0.5 * np.arange(SEQUENCE[0])[None] + phase[:, None])[..., None]


def _image_table(images: np.ndarray, ids: list[str]) -> pa.Table:
    """Images as the estimator stores them: a list<double> column ``x``, flattened."""
    flat = images.reshape(len(images), -1)
    width = flat.shape[1]
    offsets = pa.array(np.arange(0, (len(flat) + 1) * width, width, dtype=np.int64))
    return pa.table({"id": ids, "x": pa.LargeListArray.from_arrays(offsets, pa.array(flat.ravel()))})


def _rows(kind: str) -> pa.Table:
    """Rows to score: normal rows, anomalies and extreme rows (1e300; its
    normalized size is beyond float32), with an ``id``."""
    if kind == "conv":
        images = _images(24, seed=9)
        images[20:] = np.flip(images[20:], axis=1).transpose(0, 2, 1, 3)  # the bar turned
        images[23, 0, 0, 0] = 1e300
        return _image_table(images, [f"image-{i:03d}" for i in range(24)])
    if kind == "transformer":
        sequences = _sequences(24, seed=9)
        sequences[20:, 4:8, 0] += 2.0  # a bump
        sequences[23, 0, 0] = 1e300
        return _image_table(sequences, [f"sequence-{i:03d}" for i in range(24)])
    table = pa.concat_tables([article_table(40, seed=5, id_prefix="new"), planted_anomalies(8)])
    extreme = article_table(2, seed=6, id_prefix="extreme").to_pydict()
    extreme["x3"][0] = 1e300
    extreme["x1"][1] = -1e300
    return pa.concat_tables([table, pa.table(extreme, schema=table.schema)])


def _features(table: pa.Table, artifact) -> np.ndarray:
    """The rows' raw features, float64 [n, width], in model order."""
    columns = []
    for feature in artifact.metadata.spec.features:
        column = table[feature.name].combine_chunks()
        if feature.shape:
            columns.append(column.flatten().to_numpy().reshape(len(table), feature.size))
        else:
            columns.append(column.to_numpy()[:, None])
    return np.hstack(columns).astype(np.float64)


def _fit(kind: str, model_dir: str) -> None:
    if kind == "conv":
        Autoencoder("conv", latent_dim=2, **TINY).fit(_images(200, seed=2)).save(model_dir)
        return
    if kind == "transformer":
        model = Autoencoder("transformer", latent_dim=2, hidden_units=(8,), **TINY)
        model.fit(_sequences(200, seed=2)).save(model_dir)
        return
    rows = article_table(1000, seed=0).select(list(FEATURES))
    Autoencoder(kind, latent_dim=1, hidden_units=(16, 16), **TINY).fit(rows).save(model_dir)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    """Per kind: the model directory, its artifact, the rows, their raw
    features and the SavedModel ``autoenc export`` wrote."""
    out = {}
    for kind in KINDS:
        where = tmp_path_factory.mktemp(kind)
        model_dir = str(where / "model")
        _fit(kind, model_dir)
        assert cli.main(["export", f"--model_dir={model_dir}", f"--output={where / 'serving'}"]) == 0
        artifact = load_artifact(model_dir)
        rows = _rows(kind)
        out[kind] = {
            "model_dir": model_dir,
            "artifact": artifact,
            "rows": rows,
            "features": _features(rows, artifact),
            "saved_model": str(where / "serving" / "1"),
        }
    return out


@pytest.fixture(scope="module")
def served(cases, tmp_path_factory) -> dict:
    """Every kind's SavedModel run on its rows in one isolated process: kind -> outputs."""
    where = tmp_path_factory.mktemp("served")
    jobs = []
    for kind, case in cases.items():
        np.save(where / f"{kind}.npy", case["features"])
        jobs.append(
            {
                "path": case["saved_model"],
                "rows": str(where / f"{kind}.npy"),
                "inputs": [
                    [input_name(f.name), list(f.shape)] for f in case["artifact"].metadata.spec.features
                ],
                "out": str(where / f"{kind}.npz"),
            }
        )
    (where / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED, str(where / "jobs.json")],
        cwd=where,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    versions = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [v["version"] for v in versions] == [case["artifact"].version for case in cases.values()]
    return {kind: dict(np.load(where / f"{kind}.npz")) for kind in cases}


@pytest.fixture(scope="module")
def cli_scores(cases, tmp_path_factory) -> dict:
    """``autoenc score --passthrough`` on each kind's rows: kind -> {output: array}, in row order."""
    out = {}
    for kind, case in cases.items():
        where = tmp_path_factory.mktemp(f"score-{kind}")
        pq.write_table(case["rows"], where / "rows.parquet")
        summary = score.run(
            [
                f"--input={where / 'rows.parquet'}",
                f"--model_dir={case['model_dir']}",
                f"--output={where / 'out'}",
                "--passthrough",
            ]
        )
        assert summary["counts"]["scored"] == case["rows"].num_rows
        table = pq.read_table(where / "out" / "scores")
        order = {key: i for i, key in enumerate(case["rows"]["id"].to_pylist())}
        table = table.take(np.argsort([order[key] for key in table["id"].to_pylist()]))
        latent_dim = case["artifact"].metadata.latent_dim
        out[kind] = {
            # An extreme row's latent is written as null (NaN in the SavedModel).
            "latent": np.array(
                [v if v is not None else [np.nan] * latent_dim for v in table["latent"].to_pylist()]
            ),
            **{name: table[name].to_numpy() for name in OUTPUTS if name != "latent"},
        }
    return out


def _largest_relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    finite = np.isfinite(want)
    if not finite.any():
        return 0.0
    diff = np.abs(got[finite].astype(np.float64) - want[finite]) / np.maximum(np.abs(want[finite]), 1e-30)
    return float(diff.max())


@pytest.mark.pipeline
@pytest.mark.parametrize("kind", KINDS)
def test_the_saved_model_gives_autoenc_scores_numbers_without_autoenc(kind, served, cli_scores, cases):
    want = cli_scores[kind]
    largest = {}
    for prefix in ("", "score_rows.", "call."):
        got = served[kind]
        assert set(OUTPUTS) <= {k.removeprefix(prefix) for k in got if k.startswith(prefix)}
        for name in ("latent", "latent_distance", "reconstruction_error", "anomaly_score"):
            np.testing.assert_allclose(got[prefix + name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)
            largest[name] = max(
                largest.get(name, 0.0), _largest_relative_difference(got[prefix + name], want[name])
            )
        np.testing.assert_array_equal(got[prefix + "is_anomaly"], want["is_anomaly"])
    print(f"\n{kind}: largest relative differences from autoenc score: {largest}")
    got = served[kind]
    assert got["latent"].dtype == np.float32 and got["reconstruction_error"].dtype == np.float64
    assert got["is_anomaly"].dtype == bool
    # The extreme rows: certain anomalies, never NaN scores.
    extreme = np.flatnonzero(np.abs(cases[kind]["features"]).max(axis=1) >= 1e300)
    assert len(extreme) >= 1
    assert (
        np.isinf(got["reconstruction_error"][extreme]).all()
        and np.isinf(got["latent_distance"][extreme]).all()
    )
    assert (got["anomaly_score"][extreme] == 1).all() and got["is_anomaly"][extreme].all()
    assert np.isnan(got["latent"][extreme]).all()
    for name in ("reconstruction_error", "anomaly_score", "latent_distance"):
        assert not np.isnan(got[name]).any()
    # Normal rows are not all anomalies: the threshold is the model's.
    assert not got["is_anomaly"].all()


def test_the_saved_model_scores_non_finite_inputs_as_anomalies(cases):
    # autoenc score rejects NaN and inf before scoring; a server has no rejected
    # output, so such rows come back as certain anomalies, never as normal.
    model = tf.saved_model.load(cases["dense"]["saved_model"])
    rows = np.repeat(cases["dense"]["features"][:1], 4, axis=0)
    rows[1, 0], rows[2, 1], rows[3, 2] = np.nan, np.inf, -np.inf
    out = {k: v.numpy() for k, v in model(tf.constant(rows)).items()}
    assert out["is_anomaly"].tolist() == [out["is_anomaly"][0], True, True, True]
    assert np.isinf(out["reconstruction_error"][1:]).all() and (out["anomaly_score"][1:] == 1).all()
    assert np.isfinite(out["reconstruction_error"][0])


class SavedModelHandler(TFModelHandlerTensor):
    """Beam 2.77 loads models with tf.keras.models.load_model, which Keras 3
    refuses for every SavedModel (apache/beam#30616)."""

    def load_model(self):
        return tf.saved_model.load(self._model_uri)


@pytest.mark.pipeline
def test_beams_tf_model_handler_runs_the_saved_model(cases, cli_scores):
    case = cases["dense"]
    keys = case["rows"]["id"].to_pylist()
    want = {key: {name: cli_scores["dense"][name][i] for name in OUTPUTS} for i, key in enumerate(keys)}

    def check(actual):
        if sorted(key for key, _ in actual) != sorted(keys):
            raise BeamAssertException(f"expected one result per row; got keys {sorted(k for k, _ in actual)}")
        for key, result in actual:
            for name in ("reconstruction_error", "anomaly_score", "latent"):
                np.testing.assert_allclose(result[name], want[key][name], rtol=1e-5, atol=1e-7)
            assert result["is_anomaly"] == want[key]["is_anomaly"], key

    with beam.Pipeline(runner="FnApiRunner") as p:
        results = (
            p
            | beam.Create(list(zip(keys, case["features"].tolist(), strict=True)))
            | "ToTensor" >> beam.MapTuple(lambda key, row: (key, tf.constant(row, tf.float64)))
            | RunInference(KeyedModelHandler(SavedModelHandler(case["saved_model"])))
            | "ToNumpy" >> beam.MapTuple(lambda key, r: (key, {k: v.numpy() for k, v in r.inference.items()}))
        )
        assert_that(results, check)


def test_each_export_gets_the_next_version_number_and_records_its_source(cases, tmp_path, capsys):
    case = cases["dense"]
    serving = tmp_path / "serving"
    (serving / "notes").mkdir(parents=True)  # not a number: ignored
    assert cli.main(["export", f"--model_dir={case['model_dir']}", f"--output={serving}"]) == 0
    first = capsys.readouterr().err
    assert re.search(rf"wrote model version {case['artifact'].version} .*\(dense\).* to {serving}/1\b", first)
    path = export_saved_model(case["model_dir"], str(serving), version=case["artifact"].version)
    assert path == f"{serving}/2" and next_version_number(str(serving)) == 3
    # Nothing else is left in the folder: the staging copies were renamed.
    assert sorted(p.name for p in serving.iterdir()) == ["1", "2", "notes"]
    recorded = json.loads((serving / "2" / "assets" / METADATA_ASSET).read_text())
    assert recorded["model_version"] == case["artifact"].version
    assert recorded["model_dir"] == case["model_dir"] and recorded["model_kind"] == "dense"
    inputs = recorded["signatures"]["serving_default"]["inputs"]
    assert [i["input"] for i in inputs] == list(FEATURES) and inputs[0]["shape"] == [None]


def test_export_to_a_filesystem_url_writes_a_loadable_numbered_version(cases):
    # ram:// stands in for gs://: folders there are copied, not renamed.
    case = cases["conv"]
    path = export_saved_model(case["model_dir"], "ram://serving/conv")
    assert path == "ram://serving/conv/1"
    model = tf.saved_model.load(path)
    out = model(tf.constant(case["features"][:3]))
    want = case["artifact"].scorer().score(case["features"][:3])
    np.testing.assert_allclose(out["reconstruction_error"].numpy(), want.reconstruction_error, rtol=1e-5)
    assert model.signatures["serving_default"].structured_input_signature[1]["x"].shape.as_list() == [
        None,
        *IMAGE,
    ]


def test_export_of_a_missing_model_dir_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    status = cli.main(["export", f"--model_dir={missing}", f"--output={tmp_path / 'serving'}"])
    assert status == 3  # bad model (autoenc_beam.cli.EXIT_DATA)
    err = capsys.readouterr().err
    assert f"autoenc export: error: Model directory {missing} does not exist" in err
    assert not (tmp_path / "serving").exists()
    assert cli.main(["export", f"--model_dir={missing}"]) == 2  # no --output
    assert "--output" in capsys.readouterr().err


def test_input_names_are_the_columns_made_safe_for_tensorflow():
    assert [input_name(n) for n in ("x1", "a.b-c", "pixel values", "_id", "ü")] == [
        "x1",
        "a.b-c",
        "pixel_values",
        "f_id",
        "f_",
    ]


def test_anomaly_score_in_the_graph_is_numpys_interpolation():
    rng = np.random.default_rng(4)
    for quantiles in (
        np.sort(rng.exponential(size=101)),
        [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0],  # ties, a tie at the top
        [0.5, 0.5, 0.5],  # every validation error equal
    ):
        q = np.asarray(quantiles)
        errors = np.concatenate([q, rng.uniform(-1, q.max() + 1, 500), [np.inf, 0.0, -np.inf]])
        got = _quantile_interpolation(q)(tf.constant(errors)).numpy()
        np.testing.assert_array_equal(got, anomaly_score(errors, q))


def test_columns_with_other_characters_are_served_under_safe_names(tmp_path, capsys):
    z = np.random.default_rng(5).normal(size=300)
    table = pa.table({"pixel values": z, "b": 2 * z + 1, "c": -z})
    Autoencoder("pca", latent_dim=1, n_init=1).fit(table).save(str(tmp_path / "m"))
    model = tf.saved_model.load(export_saved_model(str(tmp_path / "m"), str(tmp_path / "serving")))
    inputs = model.signatures["serving_default"].structured_input_signature[1]
    assert sorted(spec.name for spec in inputs.values()) == ["b", "c", "pixel_values"]
    out = model.signatures["serving_default"](
        pixel_values=tf.constant([0.5], tf.float64),
        b=tf.constant([2.0], tf.float64),
        c=tf.constant([-0.5], tf.float64),
    )
    assert out["reconstruction_error"].numpy()[0] < 1e-6
    # Two columns that would share an input name: refused, with both named.
    clash = table.append_column("pixel_values", table["b"])
    Autoencoder("pca", latent_dim=1, n_init=1).fit(clash).save(str(tmp_path / "clash"))
    assert cli.main(["export", f"--model_dir={tmp_path / 'clash'}", f"--output={tmp_path / 's2'}"]) == 2
    assert "Features ['pixel values', 'pixel_values'] all become the SavedModel input 'pixel_values'" in (
        capsys.readouterr().err
    )


# --- docs/serving.md ---------------------------------------------------------
# tests/test_docs.py checks that every block of every page is marked as run
# (by it or by a named test file) or says why not; the blocks marked
# "run by tests/test_export.py" run here.

FENCE = re.compile(r"(?:<!-- (?P<mark>[^>]*) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


def _doc_blocks() -> list[tuple[str, str, str]]:
    """(mark, language, code) of every fenced block of docs/serving.md."""
    text = (ROOT / "docs" / "serving.md").read_text()
    return [(m["mark"] or "", m["lang"], m["code"]) for m in FENCE.finditer(text)]


@pytest.mark.pipeline
def test_serving_doc_blocks_run(cases, tmp_path):
    """The page's runnable blocks in order, in a folder holding ``models/demo``:
    the export command, then the Python examples in processes where autoenc
    (and, as their marks say, Keras) cannot be imported."""
    shutil.copytree(cases["dense"]["model_dir"], tmp_path / "models" / "demo")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    ran = []
    for mark, lang, code in _doc_blocks():
        if not mark.startswith("run by"):
            continue
        if lang == "bash":
            done = subprocess.run(
                ["bash", "-euc", code], cwd=tmp_path, env=env, capture_output=True, text=True
            )
        else:
            # Beam's TensorFlow module needs Keras (through tensorflow-hub); the
            # SavedModel does not.
            blocked = ("autoenc", "keras", "tf_keras") if "Keras" in mark else ("autoenc",)
            prelude = f"import sys\nfor m in {blocked!r}:\n    sys.modules[m] = None\n"
            done = subprocess.run(
                [sys.executable, "-c", prelude + code], cwd=tmp_path, env=env, capture_output=True, text=True
            )
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
        ran.append((lang, done.stdout))
    assert [lang for lang, _ in ran] == ["bash", "python", "python"]
    assert (tmp_path / "serving" / "demo" / "1" / "saved_model.pb").exists()
    assert cases["dense"]["artifact"].version in ran[1][1]
    # Row b holds 1e300: an extreme row, a certain anomaly.
    lines = ran[2][1].splitlines()
    assert len(lines) == 2 and "('b', True)" in lines
