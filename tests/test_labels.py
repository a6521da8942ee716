"""Known labels: thresholds chosen on labeled rows at training, and ``autoenc evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from browser import Browser, require_chromium
from conftest import TINY_TRAIN_ARGS

from autoenc.artifact import load_artifact
from autoenc.datasets import article_table, planted_anomalies
from autoenc.errors import ConfigError, InputError
from autoenc_beam import evaluate, score, train

pytestmark = pytest.mark.pipeline
N_NORMAL, N_ANOMALOUS = 2000, 100


def labeled_table(n_normal=N_NORMAL, n_anomalous=N_ANOMALOUS, *, seed=0) -> pa.Table:
    """Normal rows labeled 0, planted anomalies labeled 1, two rows with bad labels."""
    normal = article_table(n_normal, seed=seed).drop_columns(["z"])
    anomalous = planted_anomalies(n_anomalous, seed=seed + 1).select(normal.column_names)
    table = pa.concat_tables([normal, anomalous])
    label = [0] * n_normal + [1] * n_anomalous
    table = table.append_column("label", pa.array(label, pa.int64()))
    bad = normal.slice(0, 2).append_column("label", pa.array([None, 2], pa.int64()))
    bad = bad.set_column(0, "id", pa.array(["bad-label-null", "bad-label-2"]))
    return pa.concat_tables([table, bad])


@pytest.fixture(scope="module")
def labeled_parquet(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("labeled") / "labeled.parquet")
    pq.write_table(labeled_table(), path, row_group_size=700)
    return path


def train_run(data, model_dir, *extra):
    return train.run(
        [f"--input={data}", f"--model_dir={model_dir}", *TINY_TRAIN_ARGS, *extra], save_main_session=False
    )


@pytest.fixture(scope="module")
def labeled_model_dir(tmp_path_factory, labeled_parquet) -> str:
    model_dir = str(tmp_path_factory.mktemp("labeled-model"))
    train_run(labeled_parquet, model_dir, "--label_column=label")
    return model_dir


def test_labeled_anomalies_stay_out_of_training_and_set_a_best_f1_threshold(labeled_model_dir):
    meta = load_artifact(labeled_model_dir).metadata
    assert meta.rows["labeled_anomalous"] == N_ANOMALOUS
    assert meta.rows["train"] + meta.rows["validation"] == N_NORMAL
    assert meta.rows["rejected"] == 2
    assert "label" not in meta.spec.names and meta.input["label_column"] == "label"
    # Training statistics are those of normal rows only (planted rows spread x1 far wider).
    normal = article_table(N_NORMAL, seed=0)
    x = np.column_stack([normal[name].to_numpy() for name in ("x1", "x2", "x3", "x4")])
    assert np.all(np.abs(meta.normalization.mean - x.mean(axis=0)) < 0.1 * x.std(axis=0))
    method = meta.threshold_method
    assert method["method"] == "best_f1" and method["label_column"] == "label"
    rates = method["on_labeled_rows"]
    assert rates["anomalous_rows"] == N_ANOMALOUS and rates["normal_rows"] == meta.rows["validation"]
    # Planted rows are far off the curve: the chosen threshold separates them well.
    assert rates["f1"] > 0.8 and rates["recall"] > 0.8 and rates["fpr"] < 0.05
    version_dir = load_artifact(labeled_model_dir).path
    rejected = pq.read_table(f"{version_dir}/rejected")
    reasons = dict(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist(), strict=True))
    assert reasons == {
        "bad-label-null": "label column 'label' is null",
        "bad-label-2": "label column 'label' is not 0 or 1 (false or true)",
    }


def test_target_fpr_bounds_the_false_positives_of_labeled_normal_rows(labeled_parquet, tmp_path):
    artifact = train_run(labeled_parquet, tmp_path / "m", "--label_column=label", "--target_fpr=0.1")
    method = artifact.metadata.threshold_method
    assert method["method"] == "target_fpr" and method["target_fpr"] == 0.1
    assert 0.05 < method["on_labeled_rows"]["fpr"] <= 0.1
    # Looser than the default contamination of 0.01 on the same errors.
    q = np.asarray(artifact.metadata.validation_error_quantiles)
    assert q[85] <= artifact.metadata.threshold <= q[95]


@pytest.mark.parametrize(
    "extra, error, match",
    [
        (["--target_fpr=0.1"], ConfigError, "--target_fpr needs --label_column"),
        (
            ["--label_column=label", "--target_fpr=0.1", "--contamination=0.1"],
            ConfigError,
            "not --contamination and --target_fpr",
        ),
        (["--label_column=id"], InputError, "Label column 'id' .* has type string"),
        (["--label_column=nope"], InputError, "Label column 'nope' is not in"),
        (["--label_column=label", "--features=x1,label"], InputError, "cannot also be a feature"),
    ],
)
def test_label_options_are_checked_before_training(labeled_parquet, tmp_path, extra, error, match):
    with pytest.raises(error, match=match):
        train.run(
            [f"--input={labeled_parquet}", f"--model_dir={tmp_path}", "--key_columns=id", *extra],
            save_main_session=False,
        )


def test_evaluate_reports_the_model_beside_pca_and_isolation_forest(labeled_model_dir, tmp_path, capsys):
    data = tmp_path / "eval.parquet"
    pq.write_table(labeled_table(1000, 50, seed=3), data)
    result = evaluate.run(
        [f"--input={data}", f"--model_dir={labeled_model_dir}", f"--output={tmp_path / 'out'}"],
        save_main_session=False,
    )
    on_disk = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    counts = result["counts"]
    assert counts == {
        "read": 1052,
        "evaluated": 1050,
        "rejected": 2,
        "baseline": counts["baseline"],
        "labeled_anomalous": 50,
    }
    meta = load_artifact(labeled_model_dir).metadata
    # The baselines were fitted on the model's own training rows (all of them: fewer than --baseline_rows).
    assert counts["baseline"] == meta.rows["train"]
    assert result["label_column"] == "label" and result["threshold"]["method"] == "best_f1"
    assert set(result["methods"]) == {
        "autoenc",
        "combined",
        "total_distance",
        "latent_distance",
        "pca",
        "isolation_forest",
    }
    for name, m in result["methods"].items():
        assert sum(m["confusion"].values()) == 1050, name
        assert m["confusion"]["tp"] + m["confusion"]["fn"] == 50
        assert m["k"] == 50 and 0 <= m["precision_at_k"] <= 1
        assert 0 <= m["roc_auc"] <= 1 and 0 < m["pr_auc"] <= 1
    model = result["methods"]["autoenc"]
    # Planted rows lie off the curve the model learned: nearly all rank above normal rows.
    assert model["roc_auc"] > 0.97 and model["precision_at_k"] > 0.8
    # The others flag as many rows as the model's threshold does.
    flagged = model["confusion"]["tp"] + model["confusion"]["fp"]
    for name in ("latent_distance", "total_distance", "pca", "isolation_forest"):
        assert abs(result["methods"][name]["flagged"] - flagged) <= 2
    # total_distance sees the planted rows off the curve as the error does.
    assert result["methods"]["total_distance"]["roc_auc"] > 0.95
    # combined_score saturates at 1 (beyond every validation row): its ties
    # allow only the nearest volume (53 for 49 when this was written).
    assert abs(result["methods"]["combined"]["flagged"] - flagged) <= 10
    rejected = pq.read_table(tmp_path / "out" / "rejected")
    assert sorted(rejected["id"].to_pylist()) == ["bad-label-2", "bad-label-null"]
    printed = capsys.readouterr().err
    assert "ROC-AUC" in printed and "isolation_forest" in printed


def test_evaluate_fits_the_baselines_on_the_rows_a_key_split_trained_on(labeled_parquet, tmp_path):
    train_run(labeled_parquet, tmp_path / "model", "--label_column=label", "--split_by=key", "--epochs=2")
    result = evaluate.run(
        [f"--input={labeled_parquet}", f"--model_dir={tmp_path / 'model'}", f"--output={tmp_path / 'out'}"],
        save_main_session=False,
    )
    assert result["counts"]["baseline"] == load_artifact(str(tmp_path / "model")).metadata.rows["train"]
    sampled = evaluate.run(
        [
            f"--input={labeled_parquet}",
            f"--model_dir={tmp_path / 'model'}",
            f"--output={tmp_path / 'sampled'}",
            "--baseline_rows=500",
        ],
        save_main_session=False,
    )
    assert 400 < sampled["counts"]["baseline"] < 600


def test_evaluate_needs_labels(tiny_model_dir, article_parquet, tmp_path):
    with pytest.raises(ConfigError, match="Pass --label_column"):
        evaluate.run(
            [f"--input={article_parquet}", f"--model_dir={tiny_model_dir}", f"--output={tmp_path}"],
            save_main_session=False,
        )
    normal_only = tmp_path / "normal.parquet"
    pq.write_table(article_table(200, seed=4).append_column("label", pa.array([False] * 200)), normal_only)
    common = [f"--input={normal_only}", f"--model_dir={tiny_model_dir}", f"--output={tmp_path / 'out'}"]
    with pytest.raises(ConfigError, match="rows labeled normal and anomalous"):
        evaluate.run([*common, "--label_column=label"], save_main_session=False)
    with pytest.raises(InputError, match="Cannot read the model's training data .* Pass --train_input"):
        evaluate.run(
            [*common, "--label_column=label", f"--train_input={tmp_path / 'gone' / '*.parquet'}"],
            save_main_session=False,
        )
    with pytest.raises(ConfigError, match="--label_column is an option of 'autoenc train'"):
        score.run([*common, "--label_column=label"], save_main_session=False)


def test_training_and_evaluation_reports_render_in_a_real_browser(labeled_model_dir, tmp_path):
    require_chromium()
    data = tmp_path / "eval.parquet"
    pq.write_table(labeled_table(400, 20, seed=5), data)
    evaluate.run(
        [f"--input={data}", f"--model_dir={labeled_model_dir}", f"--output={tmp_path / 'out'}"],
        save_main_session=False,
    )
    with Browser() as browser:
        trained = browser.render(f"{load_artifact(labeled_model_dir).path}/report.html")
        evaluated = browser.render(tmp_path / "out" / "report.html")
    for page in (trained, evaluated):
        assert page.problems() == [], page.problems()
        assert all(width > 300 and height > 200 for width, height in page.image_sizes)
        for heading in (
            "Loss per epoch",
            "Reconstruction error",
            "Latent space",
            "Highest-error",
            "latent distance",
        ):
            assert heading in page.text
        # No image feature here: no originals / reconstructions figure.
        assert "Originals" not in page.text
    assert trained.images == 3 and "best_f1" in trained.text and "labeled anomalous" in trained.text
    assert evaluated.images == 4 and "ROC and precision-recall curves" in evaluated.text
    for method in ("autoenc", "combined", "total_distance", "latent_distance", "pca", "isolation_forest"):
        assert method in evaluated.text
    # The report's table shows the figures of evaluation.json.
    figures = json.loads((tmp_path / "out" / "evaluation.json").read_text())["methods"]
    assert f"{figures['autoenc']['roc_auc']:.4g}" in evaluated.text
