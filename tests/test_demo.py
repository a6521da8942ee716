import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from autoenc.artifact import load_artifact
from autoenc_beam import demo
from autoenc_beam.options import TrainOptions


def test_demo_training_settings_yield_to_the_command_line():
    def parsed(rest):
        return PipelineOptions(demo.train_args("t.parquet", "m", rest)).view_as(TrainOptions)

    options = parsed([])
    assert (options.n_init, options.epochs, options.patience, options.min_improvement) == (1, 100, 5, 0.01)
    options = parsed(["--epochs=7", "--n_init", "4"])
    assert (options.n_init, options.epochs, options.patience) == (4, 7, 5)


@pytest.mark.pipeline
def test_demo_catches_the_planted_anomalies(tmp_path, capsys):
    summary = demo.run(["--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert summary["counts"]["read"] == 1025 and summary["counts"]["rejected"] == 5
    # The threshold is the 99th percentile of validation errors: about 10 of
    # the 1000 normal rows are flagged however good the model.
    assert summary["planted_caught"] >= 19 and summary["false_alarms"] <= 20
    version = os.path.join(summary["model"]["dir"], summary["model"]["version"])
    metadata = load_artifact(summary["model"]["dir"]).metadata
    assert metadata.hyperparameters["n_init"] == 1
    # Early stopping ended the fit, not the epoch limit.
    assert len(metadata.history["loss"]) < metadata.hyperparameters["epochs"]
    for line in ("planted anomalies caught:", "rejected rows:", "evaluation against the planted labels:"):
        assert line in out
    assert os.path.exists(os.path.join(version, "report.html"))
    assert os.path.exists(os.path.join(tmp_path, "evaluation", "report.html"))
    assert set(summary["seconds"]) == {"data", "train", "score", "evaluate"}
