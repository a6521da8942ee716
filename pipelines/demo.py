"""The built-in example, end to end: generate data, train, score, summarize.

Writes under ``--workdir``:

* ``data/train.parquet``: the article's dataset, 10,000 rows of ``Z ~ U(-5, 5)``,
  ``X = [Z^2, Z^3, sin Z, exp Z]`` (columns ``id``, ``z``, ``x1``..``x4``);
* ``data/score.parquet``: 1,000 new rows from the same curve, 20 planted
  anomalies (each feature in its normal range, but off the curve) and 5 rows
  with a null, NaN or infinite value; column ``planted`` labels the planted rows;
* ``model/``: the model directory (``autoenc train``, latent dimension 1, with
  its ``report.html``), trained with ``DEMO_TRAINING``: the spectral start alone
  and early stopping once the validation loss falls by less than 1% in 5
  epochs, so the example ends in about a minute (``autoenc train``'s defaults,
  for your data, also try 15 random starts and train on to a 0.01% fall);
* ``output/``: the scoring output (``autoenc score``);
* ``evaluation/``: the model beside PCA and IsolationForest on the labeled
  scoring rows (``autoenc evaluate``), with ``report.html``.

Example:
    autoenc demo --workdir autoenc-demo
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from autoenc.datasets import FEATURES, article_table, planted_anomalies
from autoenc.evaluation import format_table

from . import evaluate, score, train
from .options import check_known_args

# The example's training settings, ahead of the command line's (which win).
# Measured on the example (2 cores): the start selection's 15 random starts all
# lose to the spectral start and cost about 20 s; training on to the default
# 0.01% fall runs all 500 epochs (about 3 minutes) for a model that catches the
# same planted anomalies.
DEMO_TRAINING = ("--n_init=1", "--epochs=100", "--patience=5", "--min_improvement=0.01")


class DemoOptions(PipelineOptions):
    """Options of 'autoenc demo'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--workdir",
            type=str,
            default="autoenc-demo",
            help="Directory for the example's data, model and scores. Default: autoenc-demo.",
        )


def _bad_rows() -> pa.Table:
    values = {
        "x1": [None, 1.0, 4.0, 9.0, 0.25],
        "x2": [1.0, float("nan"), 8.0, 27.0, 0.125],
        "x3": [0.8, 0.8, float("inf"), 0.1, 0.5],
        "x4": [2.7, 2.7, 7.4, float("-inf"), None],
    }
    columns = {"id": [f"bad-{i}" for i in range(5)], "z": [float("nan")] * 5}
    columns.update({k: pa.array(v, pa.float64()) for k, v in values.items()})
    return pa.table(columns)


def write_data(workdir: str) -> tuple[str, str]:
    """Writes the example's training and scoring files; returns their paths."""
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    train_path = os.path.join(data, "train.parquet")
    score_path = os.path.join(data, "score.parquet")
    pq.write_table(article_table(10_000, seed=0), train_path)
    to_score = pa.concat_tables(
        [article_table(1_000, seed=1, id_prefix="new"), planted_anomalies(20), _bad_rows()]
    )
    planted = pa.array([False] * 1_000 + [True] * 20 + [False] * 5)
    pq.write_table(to_score.append_column("planted", planted), score_path)
    return train_path, score_path


def train_args(train_path: str, model_dir: str, rest: list[str]) -> list[str]:
    """``autoenc train``'s arguments for the example: its columns, a 1-wide
    latent and ``DEMO_TRAINING``, then ``rest`` (the command line's, which win)."""
    return [
        f"--input={train_path}",
        f"--model_dir={model_dir}",
        "--key_columns=id",
        f"--features={','.join(FEATURES)}",
        "--latent_dim=1",
        *DEMO_TRAINING,
        *rest,
    ]


def run(argv=None, save_main_session=False):
    """Runs the example. Returns the scoring summary."""
    argv = list(argv or [])
    check_known_args(argv)
    opt = PipelineOptions(argv).view_as(DemoOptions)
    # Every other option (training options, Beam options) goes to both jobs.
    rest = [
        a
        for i, a in enumerate(argv)
        if not a.startswith("--workdir") and not (i > 0 and argv[i - 1] == "--workdir")
    ]
    started = time.perf_counter()
    seconds = {}
    train_path, score_path = write_data(opt.workdir)
    model_dir = os.path.join(opt.workdir, "model")
    output = os.path.join(opt.workdir, "output")
    print(f"autoenc demo: wrote {train_path} (10000 rows) and {score_path} (1025 rows)", file=sys.stderr)
    seconds["data"] = time.perf_counter() - started
    train.run(train_args(train_path, model_dir, rest), save_main_session=save_main_session)
    seconds["train"] = time.perf_counter() - started - sum(seconds.values())
    summary = score.run(
        [f"--input={score_path}", f"--model_dir={model_dir}", f"--output={output}"] + rest,
        save_main_session=save_main_session,
    )
    seconds["score"] = time.perf_counter() - started - sum(seconds.values())
    evaluation_dir = os.path.join(opt.workdir, "evaluation")
    evaluation = evaluate.run(
        [
            f"--input={score_path}",
            f"--model_dir={model_dir}",
            f"--output={evaluation_dir}",
            "--label_column=planted",
        ]
        + rest,
        save_main_session=save_main_session,
    )
    seconds["evaluate"] = time.perf_counter() - started - sum(seconds.values())
    scores = pq.read_table(os.path.join(output, "scores"))
    flagged = scores.filter(scores["is_anomaly"])
    planted = pc.starts_with(scores["id"], "anomaly-")
    caught = int(pc.sum(pc.and_(planted, scores["is_anomaly"])).as_py() or 0)
    false_alarms = len(flagged) - caught
    top = scores.sort_by([("reconstruction_error", "descending")]).slice(0, 5)
    phases = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    print(f"\nautoenc demo: done in {time.perf_counter() - started:.0f} s ({phases}).")
    version_dir = f"{summary['model']['dir']}/{summary['model']['version']}"
    print(f"  model:    {version_dir}  (report: {version_dir}/report.html)")
    print(f"  scores:   {output}/scores/  rejected: {output}/rejected/  summary: {output}/summary.json")
    c = summary["counts"]
    print(
        f"  rows read {c['read']} = scored {c['scored']} + rejected {c['rejected']}; "
        f"anomalies flagged {c['anomalies']}"
    )
    print(f"  planted anomalies caught: {caught} of 20; normal rows flagged: {false_alarms} of 1000")
    print("  highest reconstruction errors:")
    for row in top.select(["id", "reconstruction_error", "is_anomaly"]).to_pylist():
        print(f"    {row['id']:>14}  {row['reconstruction_error']:10.4f}  anomaly={row['is_anomaly']}")
    rejected = pq.read_table(os.path.join(output, "rejected"))
    print("  rejected rows:")
    for row in rejected.select(["id", "reason"]).to_pylist():
        print(f"    {row['id']:>14}  {row['reason']}")
    print(f"  evaluation against the planted labels: {evaluation_dir}/report.html")
    print("    " + format_table(evaluation["methods"]).replace("\n", "\n    "))
    summary["planted_caught"] = caught
    summary["false_alarms"] = false_alarms
    summary["median_error"] = float(np.median(scores["reconstruction_error"].to_numpy()))
    summary["seconds"] = {name: round(s, 2) for name, s in seconds.items()}
    return summary


def main(argv=None):
    from .cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "demo")


if __name__ == "__main__":
    sys.exit(main())
